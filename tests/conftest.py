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


CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium: Playwright's own browser download does not work here


def pytest_collection_modifyitems(items):
    """A `browser` test drives Debian's chromium; where it is missing, the test is skipped with the fix."""
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"no chromium at {CHROMIUM} (apt-get install chromium); the browser test needs it")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def chromium() -> str:
    return str(CHROMIUM)


@pytest.fixture
def artifacts() -> Path:
    """test-artifacts/: screenshots and measurements the browser tests leave for a person to look at."""
    folder = REPO / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session", autouse=True)
def workbench_home(tmp_path_factory):
    """Runs and executed notebooks go to a fresh home; the model cache ($WORKBENCH_CACHE) is kept."""
    home = tmp_path_factory.mktemp("workbench-home")
    os.environ["WORKBENCH_HOME"] = str(home)
    return home


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny-tensor tests: fastest there, and far faster than two on a
    busy machine. `pytestmark = pytest.mark.usefixtures("one_thread")` asks for it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
