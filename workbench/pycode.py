"""The "python-code" corpus: the Python source on this machine, about 100M tokens, offline.

The text is the deduplicated `.py` source of the standard library and of every installed
distribution (the interpreter's site-packages), so a miniature pretraining run never needs the
network and, at about 100x the tokens of "python-docs", never needs to repeat its data.

- Packages: each top-level module or package is one unit ("numpy", "stdlib/json"), versioned
  through `importlib.metadata` (the distribution that installed it). Tests are kept: they are
  ordinary, idiomatic Python, and a package's tests go wherever the package goes, so they cannot
  leak between training and held-out text. `__pycache__` and generated install shims are skipped.
- Deduplication by content (SHA-256 of the bytes): vendored copies are common. The held-out
  packages come first in that order, so the held-out text never depends on the training packages
  and a copy of a held-out file is dropped from the training text.
- Held out by whole package, never by window or file, so a near-copy cannot leak: packages in the
  order of a stable hash of their name until 1.5% of the bytes, skipping any package above 0.5%
  (no single large package decides the held-out set).
- The stdlib modules whose docstrings are python-docs' English held-out windows are excluded from
  training: a model trained here is also evaluated on those windows (`data.english_heldout`).
- Tokenised once with the tokenizers library's parallel batch encoding into uint16 shards under
  `$WORKBENCH_CACHE/corpora/python-code-<fingerprint>/`; every file is written under a temporary
  name and renamed, so an interrupted build resumes at its first missing shard. The training split
  is one memmap (`train.bin`) that is never loaded into memory; `manifest.json` (package ->
  version, files, bytes, tokens) is written last and marks the build complete.
- The fingerprint covers the inventory (each package's version, file count, bytes and role) and
  the tokenizer, so a machine with other versions gets its own cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sysconfig
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from . import data
from .errors import WorkbenchError
from .paths import cache_dir

NAME = "python-code"
FORMAT = 1  # bump when the way text is chosen or encoded changes
HELD_OUT_FRACTION = 0.015  # of the corpus bytes
HELD_OUT_MAX_PACKAGE = 0.005  # a package above this fraction of the bytes always trains
SHARD_BYTES = 32 << 20  # source bytes per training shard: the unit a build resumes at
ENCODE_BYTES = 2 << 20  # source bytes per batch handed to the tokenizer (the progress bar's step)
_SKIPPED_DIRS = {"__pycache__", "site-packages", "dist-packages"}


@dataclass(frozen=True)
class Package:
    """One top-level module or package: `files` are paths relative to `root`, sorted."""

    name: str
    version: str
    root: Path
    files: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class Plan:
    """What the corpus is made of, known from a walk of the file system (no file is read)."""

    packages: tuple[Package, ...]
    held_out: frozenset[str]
    excluded: frozenset[str]
    tokenizer_key: str

    def role(self, name: str) -> str:
        return "held-out" if name in self.held_out else "excluded" if name in self.excluded else "train"

    @cached_property
    def fingerprint(self) -> str:
        inventory = [(p.name, p.version, len(p.files), p.bytes, self.role(p.name)) for p in self.packages]
        key = json.dumps([FORMAT, self.tokenizer_key, inventory])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def folder(self) -> Path:
        return cache_dir("corpora", f"{NAME}-{self.fingerprint}")

    def ordered(self) -> list[Package]:
        """Deduplication order: held-out, then excluded, then training packages, each by name."""
        return sorted(self.packages, key=lambda p: (_RANK[self.role(p.name)], p.name))


def _py_files(root: Path, entry: str) -> list[str]:
    path = root / entry
    if path.is_file():
        return [entry] if entry.endswith(".py") else []
    found = []
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if d not in _SKIPPED_DIRS and not d.startswith("."))
        rel = Path(folder).relative_to(root).as_posix()
        found += [f"{rel}/{f}" for f in sorted(files) if f.endswith(".py")]
    return found


def _versions(site: Path) -> dict[str, str]:
    """Top-level name -> "Dist 1.2" for the distributions installed in `site` (RECORD, else top_level.txt)."""
    owners: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions(path=[str(site)]):
        tops = {PurePosixPath(f).parts[0].removesuffix(".py") for f in dist.files or () if f.suffix == ".py"}
        tops = tops or set((dist.read_text("top_level.txt") or "").split())
        for top in tops:
            owners.setdefault(top, set()).add(f"{dist.metadata['Name']} {dist.version}")
    return {top: "; ".join(sorted(names)) for top, names in owners.items()}


def discover(stdlib: Path | None, site_dirs: Sequence[Path]) -> list[Package]:
    """Every top-level module or package with .py source, in the stdlib and in each site folder."""
    packages = []
    sources = ([(stdlib, "stdlib/", f"Python {platform.python_version()}")] if stdlib else []) + [
        (site, "", None) for site in site_dirs
    ]
    for root, prefix, version in sources:
        versions = _versions(root) if version is None else {}
        for entry in sorted(os.listdir(root)):
            if entry in _SKIPPED_DIRS or entry.startswith((".", "__editable__")) or entry.endswith("-info"):
                continue
            files = _py_files(root, entry)
            if files:
                top = entry.removesuffix(".py")
                size = sum((root / f).stat().st_size for f in files)
                version_ = version or versions.get(top, "unknown")
                packages.append(Package(prefix + top, version_, root, tuple(files), size))
    return packages


def _stable_hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def choose_held_out(
    packages: Iterable[Package], fraction: float = HELD_OUT_FRACTION, max_package: float = HELD_OUT_MAX_PACKAGE
) -> frozenset[str]:
    """Whole packages in the order of a stable hash of their names until `fraction` of the bytes."""
    packages = list(packages)
    total = sum(p.bytes for p in packages)
    chosen, size = set(), 0
    for package in sorted(packages, key=lambda p: _stable_hash(p.name)):
        if size >= fraction * total:
            break
        if package.bytes <= max_package * total:
            chosen.add(package.name)
            size += package.bytes
    return frozenset(chosen)


def site_dirs() -> list[Path]:
    """The interpreter's site-packages folders and those holding an installed distribution."""
    paths = sysconfig.get_paths()
    found = {Path(paths["purelib"]), Path(paths["platlib"])}
    for dist in importlib.metadata.distributions():
        found.add(Path(dist.locate_file("")))
    return sorted({p.resolve() for p in found if p.name in ("site-packages", "dist-packages") and p.is_dir()})


def plan(tokenizer, stdlib: Path | None = None, sites: Sequence[Path] | None = None) -> Plan:
    """This machine's corpus: the stdlib and site-packages (or the folders given, for tests)."""
    if stdlib is None and sites is None:
        stdlib, sites = Path(sysconfig.get_paths()["stdlib"]), site_dirs()
        excluded = english_heldout_modules(tokenizer)
    else:
        excluded = frozenset()
    if len(tokenizer) > 2**16:
        raise WorkbenchError(f"{NAME} stores uint16 tokens: a tokenizer of {len(tokenizer):,} words does not fit")
    packages = discover(stdlib, sites or [])
    if not packages:
        raise WorkbenchError(f"no .py source found under {stdlib} or {', '.join(map(str, sites or []))}")
    excluded = frozenset(p.name for p in packages if p.name in excluded)
    held_out = choose_held_out((p for p in packages if p.name not in excluded), HELD_OUT_FRACTION, HELD_OUT_MAX_PACKAGE)
    return Plan(tuple(packages), held_out, excluded, data.tokenizer_key(tokenizer))


def english_heldout_modules(tokenizer) -> frozenset[str]:
    """The stdlib packages ("stdlib/xml", ...) whose docstrings fall in python-docs' held-out split."""
    key = hashlib.sha256(f"{sysconfig.get_paths()['stdlib']}|{platform.python_version()}".encode()).hexdigest()[:12]
    path = cache_dir("corpora") / f"english-heldout-{key}-{data.tokenizer_key(tokenizer)}.json"
    if path.is_file():
        return frozenset(json.loads(path.read_text()))
    sources = data.python_docs_sources()
    tokens = data.tokenize(data.Corpus(data.DEFAULT_CORPUS, tuple(t for _, t in sources)), tokenizer)
    is_eos = tokens == tokenizer.eos_token_id
    excess = int(is_eos.sum()) - len(sources)  # EOS text inside a document would shift the count
    first = max(0, int(is_eos[: len(data.train_val_split(tokens)[0])].sum()) - excess)
    names = sorted({f"stdlib/{label}" for label, _ in sources[first:] if label})
    _write_atomic(path, json.dumps(names).encode())
    return frozenset(names)


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


_RANK = {"held-out": 0, "excluded": 1, "train": 2}


def _documents(plan: Plan, roles: set[str], stats: dict | None = None):
    """(package, text) of each first copy of a file, in deduplication order, for packages in `roles`.
    Reads every package up to the last role asked for; `stats` gets the files dropped (duplicates,
    undecodable, empty) and the files and bytes kept per package ("kept")."""
    seen: set[bytes] = set()
    stats = {} if stats is None else stats
    stats.update(duplicates=0, undecodable=0, empty=0, kept={})
    last = max(_RANK[r] for r in roles)
    for package in plan.ordered():
        role = plan.role(package.name)
        if _RANK[role] > last:
            break
        for file in package.files:
            raw = (package.root / file).read_bytes()
            digest = hashlib.sha256(raw).digest()
            if digest in seen:
                stats["duplicates"] += 1
                continue
            seen.add(digest)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                stats["undecodable"] += 1
                continue
            if not text.strip():
                stats["empty"] += 1
                continue
            kept = stats["kept"].setdefault(package.name, [0, 0])
            kept[0], kept[1] = kept[0] + 1, kept[1] + len(raw)
            if role in roles:
                yield package.name, text


def _tokenize_to(path: Path, tokenizer, documents, bar: tqdm | None) -> dict[str, int]:
    """Tokenise (package, text) pairs into one uint16 file at `path`; returns tokens per package."""
    counts: dict[str, int] = {}
    arrays, batch, size = [], [], 0

    def flush() -> None:
        nonlocal batch, size
        for (name, _), ids in zip(batch, data.encode(tokenizer, [t for _, t in batch]), strict=True):
            counts[name] = counts.get(name, 0) + len(ids)
            arrays.append(ids)
        if bar is not None:
            bar.update(size)
        batch, size = [], 0

    for name, text in documents:
        batch.append((name, text))
        size += len(text)
        if size >= ENCODE_BYTES:
            flush()
    flush()
    _write_atomic(path.with_suffix(".json"), json.dumps(counts).encode())
    _write_atomic(path, np.concatenate(arrays or [np.zeros(0, np.uint16)]).tobytes())
    return counts


def _clean_tmp(folder: Path) -> None:
    """Remove temporary files left by builds that were killed (their process is gone)."""
    for tmp in folder.glob(".*.tmp"):
        pid = int(tmp.name.split(".")[-2]) if tmp.name.split(".")[-2].isdigit() else 0
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, ValueError, OverflowError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's live process


def build_heldout(plan: Plan, tokenizer) -> np.ndarray:
    """The held-out packages' tokens alone (cached as val.bin): no training package is read."""
    path = plan.folder / "val.bin"
    if not path.is_file():
        _clean_tmp(plan.folder)
        _tokenize_to(path, tokenizer, _documents(plan, {"held-out"}), None)
    return np.fromfile(path, dtype=np.uint16)


def build(plan: Plan, tokenizer, progress: bool = True) -> dict:
    """The whole corpus (resuming at the first missing shard); returns the manifest."""
    folder, manifest_path = plan.folder, plan.folder / "manifest.json"
    if manifest_path.is_file():
        return json.loads(manifest_path.read_text())
    started = time.perf_counter()
    if progress:
        print(_what_changed(plan), flush=True)
    build_heldout(plan, tokenizer)
    _clean_tmp(folder)
    stats: dict = {}
    documents = list(_documents(plan, {"train"}, stats))  # (package, text): a few hundred MB, read once
    shards, current, size = [], [], 0
    for document in documents:
        current.append(document)
        size += len(document[1])
        if size >= SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
    shards += [current] if current else []
    total = sum(len(t) for shard in shards for _, t in shard)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"tokenizing {NAME}", disable=not progress)
    for i, shard in enumerate(shards):
        path = folder / f"shard-{i:05d}.bin"
        if path.is_file() and path.with_suffix(".json").is_file():
            bar.update(sum(len(t) for _, t in shard))
        else:
            _tokenize_to(path, tokenizer, shard, bar)
    bar.close()
    tmp = folder / f".train.bin.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        for i in range(len(shards)):
            out.write((folder / f"shard-{i:05d}.bin").read_bytes())
    os.replace(tmp, folder / "train.bin")
    manifest = _manifest(plan, len(shards), stats, time.perf_counter() - started)
    _write_atomic(manifest_path, json.dumps(manifest, indent=1).encode())
    for i in range(len(shards)):
        (folder / f"shard-{i:05d}.bin").unlink()
        (folder / f"shard-{i:05d}.json").unlink()
    return manifest


def _what_changed(plan: Plan) -> str:
    """Why a build starts: the first one, or the packages that differ from the newest cached build."""
    cached = sorted(plan.folder.parent.glob(f"{NAME}-*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not cached:
        return f"{NAME}: building {plan.fingerprint} (once per set of installed packages; minutes on 2 cores)"
    old = json.loads(cached[-1].read_text())
    before = {name: entry["version"] for name, entry in old["packages"].items()}
    now = {p.name: p.version for p in plan.packages}
    changed = [f"{n} {before.get(n, 'new')} -> {now.get(n, 'gone')}" for n in sorted(set(before) | set(now))
               if before.get(n) != now.get(n)]
    why = "; ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return (f"{NAME}: the installed packages differ from the cached build {old['fingerprint']} "
            f"({why or 'same versions, other files'}): building {plan.fingerprint}")


def _manifest(plan: Plan, n_shards: int, stats: dict, seconds: float) -> dict:
    tokens: dict[str, int] = json.loads((plan.folder / "val.json").read_text())
    for i in range(n_shards):
        for name, n in json.loads((plan.folder / f"shard-{i:05d}.json").read_text()).items():
            tokens[name] = tokens.get(name, 0) + n
    kept = stats.pop("kept")
    packages = {
        p.name: {
            "version": p.version,
            "role": plan.role(p.name),
            "files": kept.get(p.name, [0, 0])[0],
            "bytes": kept.get(p.name, [0, 0])[1],
            "tokens": tokens.get(p.name, 0),
            "source_files": len(p.files),
            "source_bytes": p.bytes,
        }
        for p in plan.packages
    }
    return {
        "name": NAME,
        "fingerprint": plan.fingerprint,
        "tokenizer": plan.tokenizer_key,
        "format": FORMAT,
        "train_tokens": (plan.folder / "train.bin").stat().st_size // 2,
        "val_tokens": (plan.folder / "val.bin").stat().st_size // 2,
        "files": sum(k[0] for k in kept.values()),
        "source_files": sum(len(p.files) for p in plan.packages),
        **stats,
        "build_seconds": round(seconds, 1),
        "packages": packages,
    }


def load(tokenizer, progress: bool = True, plan_: Plan | None = None) -> tuple[np.memmap, np.ndarray, dict]:
    """(training tokens as a read-only memmap, held-out tokens, manifest), built on first use."""
    plan_ = plan_ or plan(tokenizer)
    manifest = build(plan_, tokenizer, progress)
    train = np.memmap(plan_.folder / "train.bin", dtype=np.uint16, mode="r")
    return train, build_heldout(plan_, tokenizer), manifest


def describe(tokenizer) -> str:
    """One line: token counts, files, packages, the cache folder and the build time (building first if needed)."""
    plan_ = plan(tokenizer)
    m = build(plan_, tokenizer)
    held = sum(1 for p in m["packages"].values() if p["role"] == "held-out")
    return (
        f"{NAME}: {m['train_tokens']:,} training tokens, {m['val_tokens']:,} held-out tokens; {m['files']:,} files "
        f"({m['duplicates']:,} duplicates dropped) in {len(m['packages'])} packages ({held} held out); "
        f"built in {m['build_seconds']:.0f} s; cache {plan_.folder}"
    )
