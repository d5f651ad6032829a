"""The model cache is checked, not trusted: bytes changed in place, a truncated file, NaN weights
and temporary folders left by a killed first save. A tiny LLaMA stands in for the default model
(same code path: `load_cached` with a writer that builds the entry from its source)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from workbench import models
from workbench.models import MANIFEST, _atomic_cache_entry, load_cached, tiny_llama

ENTRY = "tiny-test-f32"
pytestmark = pytest.mark.slow  # each test builds tiny models through the real tokenizer: seconds apiece on a loaded CPU


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    built = []

    def write(folder):
        built.append(folder)
        model, _ = tiny_llama(seed=1)
        model.save_pretrained(folder)

    return tmp_path / "models" / ENTRY, write, built


def weights(folder):
    return folder / "model.safetensors"


def reference():
    model, _ = tiny_llama(seed=1)
    return model.state_dict()


def overwrite(path, offset_from_end: int, data: bytes, keep_mtime: bool = False):
    stat = path.stat()
    with open(path, "r+b") as file:
        file.seek(stat.st_size - offset_from_end)
        file.write(data)
    if keep_mtime:  # bit rot: the bytes change, the file's mtime does not
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def assert_is_reference(model):
    expected = reference()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_entry_has_a_manifest_and_loads(cache):
    folder, write, built = cache
    model = load_cached(ENTRY, write, torch.float32, "sdpa")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["model.safetensors"]["size"] == weights(folder).stat().st_size and len(built) == 1
    load_cached(ENTRY, write, torch.float32, "sdpa")
    assert len(built) == 1  # a sound entry is reused
    assert_is_reference(model)


def test_bytes_changed_in_place_are_found_by_checksum_and_rebuilt(cache):
    folder, write, built = cache
    load_cached(ENTRY, write, torch.float32, "sdpa")
    overwrite(weights(folder), 4096, os.urandom(1024))
    with pytest.warns(UserWarning, match="SHA-256 differs"):
        model = load_cached(ENTRY, write, torch.float32, "sdpa")
    assert len(built) == 2
    assert_is_reference(model)


def test_nan_weights_with_an_unchanged_mtime_are_found_on_load_and_rebuilt(cache):
    folder, write, built = cache
    load_cached(ENTRY, write, torch.float32, "sdpa")
    overwrite(weights(folder), 4096, b"\xff" * 1024, keep_mtime=True)  # 0xffffffff is a float32 NaN
    with pytest.warns(UserWarning, match="NaN or infinite weights"):
        model = load_cached(ENTRY, write, torch.float32, "sdpa")
    assert len(built) == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert_is_reference(model)


def test_truncated_file_is_rebuilt_not_a_raw_safetensors_error(cache):
    folder, write, _ = cache
    load_cached(ENTRY, write, torch.float32, "sdpa")
    path = weights(folder)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.warns(UserWarning, match="truncated"):
        model = load_cached(ENTRY, write, torch.float32, "sdpa")
    assert_is_reference(model)


def test_an_entry_that_stays_bad_is_one_clear_error(cache):
    def write_nan(target):
        model, _ = tiny_llama(seed=1)
        with torch.no_grad():
            model.model.norm.weight.fill_(float("nan"))
        model.save_pretrained(target)

    with pytest.warns(UserWarning), pytest.raises(models.WorkbenchError, match="still damaged after a rebuild"):
        load_cached(ENTRY, write_nan, torch.float32, "sdpa")


def test_entry_without_manifest_is_rebuilt(cache):
    """A manifest-less entry cannot be checked (a damaged file would get a new manifest): rebuilt."""
    folder, write, built = cache
    model, _ = tiny_llama(seed=1)
    model.save_pretrained(folder)
    overwrite(weights(folder), 4096, b"\x00\x01" * 512)  # damage a manifest would otherwise bless
    with pytest.warns(UserWarning, match="no readable manifest"):
        assert_is_reference(load_cached(ENTRY, write, torch.float32, "sdpa"))
    assert len(built) == 1 and (folder / MANIFEST).is_file()


def test_bytes_flipped_in_place_are_found_on_first_use_in_a_process(cache):
    """Same size, same mtime, finite values: only the SHA-256 sees it, checked on the first use in a process."""
    folder, write, built = cache
    _atomic_cache_entry(ENTRY, write)
    models._verified.clear()  # as a new process
    overwrite(weights(folder), 4096, b"\x00\x01" * 512, keep_mtime=True)  # small finite values, not NaN
    with pytest.warns(UserWarning, match="SHA-256 differs"):
        assert_is_reference(load_cached(ENTRY, write, torch.float32, "sdpa"))
    assert len(built) == 2


def test_temporary_folders_of_dead_processes_are_removed(cache):
    folder, write, _ = cache
    root = folder.parent
    root.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stale = root / f".{ENTRY}.tmp-{dead}"  # what a kill -9 during the first save left
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\0" * 1024)
    alive = root / f".{ENTRY}.tmp-{os.getppid()}"  # another process still writing: left alone
    alive.mkdir()
    _atomic_cache_entry(ENTRY, write)
    assert not stale.exists() and alive.is_dir()
