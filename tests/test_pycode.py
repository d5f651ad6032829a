"""The python-code corpus on a small constructed stdlib + site-packages, and memmap batches."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import data, pycode
from workbench.errors import WorkbenchError
from workbench.models import load_tokenizer
from workbench.profiles import Profile

SHARED = "def shared(x):\n    return x * 2  # vendored in two packages\n"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _dist(site: Path, name: str, version: str, files: list[str]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))


def _write(root: Path, rel: str, text: str | bytes) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return rel


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A stdlib and a site-packages folder; every package has distinct code, one file is vendored."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pycode, "HELD_OUT_FRACTION", 0.2)  # a few packages of a small machine
    monkeypatch.setattr(pycode, "HELD_OUT_MAX_PACKAGE", 0.3)
    stdlib, site = tmp_path / "lib", tmp_path / "lib" / "site-packages"
    for i in range(12):
        _write(stdlib, f"mod{i}.py", f"def f{i}(a, b):\n    '''Module {i}.'''\n    return a + {i} * b\n" * (i + 1))
    _write(stdlib, "json/__init__.py", "import re\n\ndef loads(s):\n    return eval(s)\n")
    _write(stdlib, "json/__pycache__/cached.py", "not source, never read")
    alpha = [_write(site, "alpha/__init__.py", "from .core import run\n"), _write(site, "alpha/core.py", SHARED)]
    alpha.append(_write(site, "alpha/tests/test_core.py", "def test_run():\n    assert run() is None\n"))
    alpha.append(_write(site, "alpha/empty.py", ""))
    _dist(site, "alpha", "1.0", alpha)
    beta = [_write(site, "beta/_vendor/core.py", SHARED), _write(site, "beta/latin.py", b"x = '\xe9'\n")]
    _dist(site, "beta", "2.0", beta)
    _write(site, "loose.py", "print('a module of no distribution')\n")
    return stdlib, site


def test_discover_versions_and_files(machine):
    stdlib, site = machine
    packages = {p.name: p for p in pycode.discover(stdlib, [site])}
    assert set(packages) == {*(f"stdlib/mod{i}" for i in range(12)), "stdlib/json", "alpha", "beta", "loose"}
    assert packages["alpha"].version == "alpha 1.0" and packages["loose"].version == "unknown"
    assert packages["stdlib/json"].files == ("json/__init__.py",)  # __pycache__ skipped
    assert "alpha/tests/test_core.py" in packages["alpha"].files  # tests are kept


def test_dedupe_and_manifest(machine, tokenizer):
    plan = pycode.plan(tokenizer, *machine[:1], [machine[1]])
    train, val, manifest = pycode.load(tokenizer, progress=False, plan_=plan)
    assert manifest["duplicates"] == 1 and manifest["undecodable"] == 1 and manifest["empty"] == 1
    assert manifest["train_tokens"] == len(train) and manifest["val_tokens"] == len(val)
    assert manifest["fingerprint"] == plan.fingerprint and manifest["packages"]["alpha"]["version"] == "alpha 1.0"
    entries = manifest["packages"]
    assert sum(e["tokens"] for e in entries.values()) == len(train) + len(val)
    kept = sum(e["files"] for e in entries.values())
    eos = int((train == tokenizer.eos_token_id).sum() + (val == tokenizer.eos_token_id).sum())
    assert kept == manifest["files"] == eos
    shared = tokenizer(SHARED, add_special_tokens=False)["input_ids"]
    stream = np.concatenate([val, train]).tolist()
    hits = [i for i in range(len(stream)) if stream[i : i + len(shared)] == shared]
    assert len(hits) == 1  # the vendored copy is read once
    assert {e["role"] for e in entries.values()} == {"train", "held-out"}
    assert all(e["tokens"] > 0 for e in entries.values() if e["role"] == "held-out")
    assert isinstance(train, np.memmap) and not list(plan.folder.glob("shard-*"))


def test_held_out_alone_matches_full_build(machine, tokenizer):
    plan = pycode.plan(tokenizer, machine[0], [machine[1]])
    alone = pycode.build_heldout(plan, tokenizer)
    assert not (plan.folder / "train.bin").exists() and len(alone) > 0
    (plan.folder / "val.bin").unlink()
    _, val, _ = pycode.load(tokenizer, progress=False, plan_=plan)
    assert np.array_equal(alone, val)


def test_held_out_is_whole_packages_by_stable_hash(machine):
    packages = pycode.discover(machine[0], [machine[1]])
    chosen = pycode.choose_held_out(packages, fraction=0.2, max_package=0.5)
    assert chosen == pycode.choose_held_out(packages[::-1], fraction=0.2, max_package=0.5)  # order-free
    total = sum(p.bytes for p in packages)
    held = sum(p.bytes for p in packages if p.name in chosen)
    assert 0.2 * total <= held < 0.2 * total + max(p.bytes for p in packages)
    biggest = max(packages, key=lambda p: p.bytes)
    assert biggest.name not in pycode.choose_held_out(packages, fraction=1.0, max_package=0.9 * biggest.bytes / total)
    by_hash = sorted(packages, key=lambda p: pycode._stable_hash(p.name))
    assert by_hash[0].name in chosen  # the first in hash order is always taken (it is small here)


def test_fingerprint_follows_versions(machine, tokenizer):
    stdlib, site = machine
    before = pycode.plan(tokenizer, stdlib, [site])
    assert before.fingerprint == pycode.plan(tokenizer, stdlib, [site]).fingerprint
    assert "building" in pycode._what_changed(before) and "differ" not in pycode._what_changed(before)
    pycode.build(before, tokenizer, progress=False)
    info = site / "alpha-1.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alpha\nVersion: 1.1\n")
    after = pycode.plan(tokenizer, stdlib, [site])
    assert after.fingerprint != before.fingerprint and after.folder != before.folder
    notice = pycode._what_changed(after)
    assert f"differ from the cached build {before.fingerprint} (alpha alpha 1.0 -> alpha 1.1)" in notice
    _, _, manifest = pycode.load(tokenizer, progress=False, plan_=after)
    assert manifest["packages"]["alpha"]["version"] == "alpha 1.1"


def test_interrupted_build_resumes(machine, tokenizer, monkeypatch):
    monkeypatch.setattr(pycode, "SHARD_BYTES", 200)  # several shards
    plan = pycode.plan(tokenizer, machine[0], [machine[1]])
    calls = []
    real = pycode._tokenize_to

    def dies_at_the_third(path, *args):
        calls.append(path.name)
        if len(calls) == 3:
            (plan.folder / f".{path.name}.999999999.tmp").write_bytes(b"half")  # a killed writer's leftover
            raise KeyboardInterrupt
        return real(path, *args)

    monkeypatch.setattr(pycode, "_tokenize_to", dies_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        pycode.build(plan, tokenizer, progress=False)
    assert not (plan.folder / "manifest.json").exists() and (plan.folder / "shard-00000.bin").exists()
    resumed = []
    monkeypatch.setattr(pycode, "_tokenize_to", lambda path, *a: resumed.append(path.name) or real(path, *a))
    manifest = pycode.build(plan, tokenizer, progress=False)
    assert "shard-00000.bin" not in resumed and not list(plan.folder.glob(".*.tmp"))
    resumed_train = np.fromfile(plan.folder / "train.bin", dtype=np.uint16)
    for path in plan.folder.iterdir():
        path.unlink()
    assert pycode.build(plan, tokenizer, progress=False)["train_tokens"] == manifest["train_tokens"]
    assert np.array_equal(np.fromfile(plan.folder / "train.bin", dtype=np.uint16), resumed_train)


def test_memmap_batches_read_blocks(tmp_path):
    path = tmp_path / "t.bin"
    np.arange(10_000, dtype=np.uint16).tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    stream = data.batches(tokens, 8, 65, seed=3)
    first = next(stream)
    assert first.dtype == torch.int64 and first.shape == (8, 65)
    assert bool(((first[:, 1:] - first[:, :-1]) == 1).all()) and bool((first[:, 0] % 65 == 0).all())
    assert torch.equal(first, next(data.batches(tokens, 8, 65, seed=3)))
    assert not torch.equal(first, next(stream))
    ranks = [next(data.batches(tokens, 4, 65, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert torch.equal(torch.cat(ranks).sort(0).values, first.sort(0).values)  # the same global batch, split
    assert torch.equal(data.blocks(tokens, 65, 3), torch.arange(195).view(3, 65))
    with pytest.raises(WorkbenchError, match="fewer than one block"):
        next(data.batches(tokens[:10], 2, 65))


def test_check_epochs_refuses_repeats_in_full_profiles():
    full, smoke = Profile(name="full"), Profile(name="smoke")
    assert data.check_epochs(smoke, 3_000, 1_000) == 3.0
    assert data.check_epochs(full, 1_000, 1_000) == 1.0
    with pytest.raises(WorkbenchError, match="3.00 epochs.*allow_repeats"):
        data.check_epochs(full, 3_000, 1_000)
    allowed = type("P", (), {"name": "full", "allow_repeats": True, "corpus": "x"})()
    assert data.check_epochs(allowed, 3_000, 1_000) == 3.0


@pytest.mark.slow  # tokenises this machine's Python source: minutes on 2 cores, seconds on 16
def test_python_code_on_this_machine(tokenizer):
    splits = data.token_splits("python-code", tokenizer)
    assert splits.n_train >= 50_000_000 and 0.005 < splits.n_val / splits.n_train < 0.04
    manifest = json.loads((pycode.plan(tokenizer).folder / "manifest.json").read_text())
    assert manifest["fingerprint"] == splits.fingerprint and manifest["duplicates"] > 0
    assert torch.equal(data.code_heldout(tokenizer), splits.val)
    assert os.path.getsize(pycode.plan(tokenizer).folder / "train.bin") == 2 * splits.n_train
    from workbench.cpu.profile import CpuProfile
    from workbench.diffusion.profile import DiffusionProfile
    from workbench.echoatt.profile import EchoAttProfile
    from workbench.galore.profile import GaloreProfile
    from workbench.recursive.profile import RecursiveProfile

    for cls in (EchoAttProfile, RecursiveProfile, GaloreProfile, DiffusionProfile, CpuProfile):  # at most 1 epoch
        profile = cls.resolve("full")
        assert data.check_epochs(profile, profile.train_tokens_per_arm, splits.n_train) <= 1
