"""Shared fixtures: a private workbench home per test session, offline Hub, the default model."""

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# Before any test module imports transformers: huggingface_hub reads HF_HUB_OFFLINE once, at import.
# Set later (in a fixture), a Hub id that is not cached waits ~47 s for network timeouts instead of
# failing at once.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session", autouse=True)
def workbench_home(tmp_path_factory):
    """Runs and executed notebooks go to a fresh home; the model cache ($WORKBENCH_CACHE) is kept."""
    home = tmp_path_factory.mktemp("workbench-home")
    os.environ["WORKBENCH_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def default_model():
    from workbench.models import load_model

    return load_model(device="cpu")


@pytest.fixture
def store(tmp_path):
    from workbench.runs import RunStore

    return RunStore(tmp_path / "runs.db")


@pytest.fixture(scope="session")
def wikitext_path():
    path = SHARED_DATA / "wikitext2-valid.txt"
    if not path.is_file():
        pytest.skip(f"{path} is not here (tests that need shared data run beside ../shared)")
    return path


@pytest.fixture
def start_server():
    """`start(command, url, env, what)`: a server process started and polled until `url` answers;
    returns the process and that first answer's body. A server that exits or stays silent for 90 s
    fails the test with the end of its output. Stopping it is the caller's (servers stop differently)."""

    def start(command: list[str], url: str, env: dict, what: str) -> tuple[subprocess.Popen, str]:
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                # a Panel app's first page builds a whole session: seconds on a loaded machine; a short
                # timeout would only pile up more sessions
                return server, urllib.request.urlopen(url, timeout=60).read().decode()
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"{what} did not start: {server.stdout.read()[-2000:]}")
                time.sleep(0.5)

    return start
