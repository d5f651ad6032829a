"""Bad input, one row per case: every entry point (the command line, a notebook's parameters, the
library calls a notebook makes) answers with one line that says what is wrong and how to fix it,
exit code 2 on the command line, and leaves the run store as it was.

A row is (id, entry, expected words). `entry` is a command line (a list, run in-process through
`workbench.cli.main`) or a function of the case's folder (a library call that must raise a
`WorkbenchError`). Paths in command lines are names inside the case's folder, made by `FILES`.
"""

import errno
import hashlib
import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch

from workbench import cli, data, evaluate, models, notebook, profiles, sweep
from workbench.errors import WorkbenchError
from workbench.runs import RunStore


def _notebook(path: Path, parameters: str | None) -> None:
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})] if parameters else []
    cells.append(nbformat.v4.new_code_cell("print(x if 'x' in dir() else 0)"))
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernelspec}), path)


def _garbage_in_the_middle(path: Path) -> None:
    store = RunStore(path)
    with store.write() as db:  # enough rows for many pages, so the garbage lands inside the tables
        db.executemany("INSERT INTO metrics (run_id, step, key, value, time) VALUES (1, ?, 'loss', 1.0, 0)",
                       [(i,) for i in range(5000)])
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.db.close()
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size // 2)
        file.write(os.urandom(8192))


FILES = {  # what the cases point at, made fresh in each case's folder
    "params.ipynb": lambda p: _notebook(p, "x = 1.0\nname = 'a'\nflag = False\nsteps = 3\nprofile = 'smoke'"),
    "noparams.ipynb": lambda p: _notebook(p, None),
    "notes.txt": lambda p: p.write_text("just some notes\n"),
    "script.py": lambda p: p.write_text("print('hello')\n"),
    "broken.ipynb": lambda p: p.write_text("{ this is not json"),
    "afile": lambda p: p.write_text("a file, not a folder\n"),
    "empty.txt": lambda p: p.write_text(""),
    "blank.txt": lambda p: p.write_text("   \n\n\t\n"),
    "binary.txt": lambda p: p.write_bytes(bytes(range(256)) * 8),
    "latin1.txt": lambda p: p.write_bytes("café crème, déjà vu\n".encode("latin-1")),
    "no-text-here": lambda p: (p.mkdir(), (p / "image.png").write_bytes(b"\x89PNG")),
    "points-bad.json": lambda p: p.write_text("[{'x': 1.0}"),
    "points-empty.json": lambda p: p.write_text("[]"),
    "points-scalars.json": lambda p: p.write_text("[1, 2, 3]"),
    "points-unknown.json": lambda p: p.write_text('[{"nope": 1}]'),
    "garbage.db": lambda p: p.write_bytes(os.urandom(6000)),
    "damaged.db": _garbage_in_the_middle,
}


@dataclass
class Case:
    id: str
    entry: list | object  # argv for the command line, or a function of the case's folder
    expect: str  # words the one-line message must contain
    env: dict | None = None  # environment for a command line: names in FILES, or "@store:NAME" (see store_named)
    code: int = 2

    def __repr__(self) -> str:
        return self.id


def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return LlamaForCausalLM(config)


def store_named(name: str):
    """A home whose runs.db is one of FILES (garbage, damaged): entries that open the default store meet it."""
    return {"WORKBENCH_HOME": f"@store:{name}"}


@dataclass(frozen=True)
class SmallProfile(profiles.Profile):
    steps: int = 100
    lr: float = 1e-3


SmallProfile.presets = {"smoke": {"steps": 2}, "full": {}}

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --profile full is allowed")

CASES = [
    # -- the command line: notebooks and their parameters ---------------------------------------
    Case("run: no such notebook", ["run", "nope"], "no notebook 'nope'"),
    Case("run: a text file", ["run", "notes.txt"], "is not a Jupyter notebook"),
    Case("run: a Python script", ["run", "script.py"], "jupytext --to ipynb script.py"),
    Case("run: an .ipynb that is not JSON", ["run", "broken.ipynb"], "is not a Jupyter notebook"),
    Case("run: unknown parameter", ["run", "params.ipynb", "-p", "nope", "1"], "has no parameter nope: its parameters"),
    Case("run: -p profile", ["run", "params.ipynb", "-p", "profile", "full"], "set the profile with --profile full"),
    Case("run: a -p key twice", ["run", "params.ipynb", "-p", "x", "1", "-p", "x", "2"], "-p x is given twice (1 and"),
    Case("run: text for a number", ["run", "params.ipynb", "-p", "x", "abc"], "x takes float values like 1.0, not"),
    Case("run: code as a value", ["run", "params.ipynb", "-p", "x", "__import__('os').system('touch pwned')"],
         "x takes float values"),
    Case("run: a number for a flag", ["run", "params.ipynb", "-p", "flag", "1"], "flag takes bool values like False"),
    Case("run: a float for a count", ["run", "params.ipynb", "-p", "steps", "2.5"], "steps takes int values like 3"),
    Case("run: unknown kernel", ["run", "params.ipynb", "--kernel", "nosuch"], "no Jupyter kernel named 'nosuch'"),
    Case("run: output folder is a file", ["run", "params.ipynb", "--output-dir", "afile"], "is a file: give a folder"),
    Case("run: output folder under a file", ["run", "params.ipynb", "--output-dir", "afile/out"], "cannot create"),
    Case("run: no parameters cell", ["run", "noparams.ipynb", "-p", "x", "1"], "has no cell tagged 'parameters'"),
    Case("run: unknown profile", ["run", "params.ipynb", "--profile", "huge"], "invalid choice: 'huge'"),
    Case("run: no notebook named", ["run"], "the following arguments are required: notebook"),
    Case("run: -p without a value", ["run", "params.ipynb", "-p", "x"], "expected 2 arguments"),
    pytest.param(Case("run: full profile, no GPU", ["run", "params.ipynb", "--profile", "full"], "add --allow-cpu"),
                 marks=NO_CUDA),
    Case("unknown command", ["frob"], "invalid choice: 'frob'"),
    Case("sweep: home is a file", ["sweep", "params.ipynb", "-p", "x", "1"], "cannot create the workbench home",
         env={"WORKBENCH_HOME": "afile"}),
    # -- the command line: typed settings of the bundled notebooks, refused before a kernel starts --------
    Case("run 03: a loop count of 0", ["run", "03_recursive_transformers", "-p", "loops", "[0]"],
         "RecursiveProfile.loops must be >= 1 (each value), got (0,)"),
    Case("run 03: loops that do not divide the depth", ["run", "03_recursive_transformers", "-p", "loops", "(4,)"],
         "6 layers cannot be looped 4 times"),
    Case("run 03: a rank above the width", ["run", "03_recursive_transformers", "-p", "ranks", "[100000]"],
         "RecursiveProfile.ranks must be <= 64"),
    Case("run 03: text for loops", ["run", "03_recursive_transformers", "-p", "loops", "two"],
         "RecursiveProfile.loops must be tuple of int, got 'two'"),
    Case("run 04: rank 0", ["run", "04_galore_optimizers", "-p", "rank", "0"], "GaloreProfile.rank must be >= 1"),
    Case("run 04: a rank above the width", ["run", "04_galore_optimizers", "-p", "rank", "100000"],
         "GaloreProfile.rank must be <= 64 (the tiny model's width)"),
    Case("run 04: no seeds", ["run", "04_galore_optimizers", "-p", "seeds", "0"], "GaloreProfile.seeds must be >= 1"),
    Case("run 04: a negative learning rate", ["run", "04_galore_optimizers", "-p", "adamw_lrs", "[-1e-3]"],
         "GaloreProfile.adamw_lrs must be > 0 (each value)"),
    Case("run 05: an unknown size", ["run", "05_masked_diffusion", "-p", "sizes", "('huge',)"],
         "DiffusionProfile.sizes must be one of 't1'"),
    Case("run 05: negative reversal steps", ["run", "05_masked_diffusion", "-p", "reversal_steps", "-5"],
         "DiffusionProfile.reversal_steps must be >= 1, got -5"),
    Case("run 05: zero sampling steps", ["run", "05_masked_diffusion", "-p", "steps", "[0]"],
         "DiffusionProfile.steps must be >= 1 (each value), got (0,)"),
    Case("run 06: an unknown precision", ["run", "06_cpu_inference", "-p", "precisions", "['float8']"],
         "CpuProfile.precisions must be one of 'float32'"),
    Case("run 06: zero threads", ["run", "06_cpu_inference", "-p", "threads", "(0,)"],
         "CpuProfile.threads must be >= 1 (each value), got (0,)"),
    Case("run 00: a layer the model lacks", ["run", "00_tour", "-p", "layer", "99"],
         "TourProfile.layer must be below 30 (smollm2-135m has 30 layers), got 99"),
    Case("run 00: a corpus that does not exist", ["run", "00_tour", "-p", "corpus", "no-such-corpus.txt"],
         "TourProfile.corpus must be 'python-docs', 'python-code', 'hf:DATASET' or a text file"),
    Case("sweep 01: text for a threshold", ["sweep", "01_attention_similarity", "-p", "threshold", "abc", "def"],
         "point 0 (01_attention_similarity threshold=abc): AttentionLabProfile.threshold must be float"),
    Case("sweep 03: one bad point of two", ["sweep", "03_recursive_transformers", "-p", "loops", "[2]", "[0]"],
         "point 1 (03_recursive_transformers loops=[0]): RecursiveProfile.loops must be >= 1"),
    # -- the command line: sweeps ----------------------------------------------------------------
    Case("sweep: a text file", ["sweep", "notes.txt", "-p", "x", "1"], "is not a Jupyter notebook"),
    Case("sweep: neither grid nor points", ["sweep", "params.ipynb"], "one of the two"),
    Case("sweep: both grid and points", ["sweep", "params.ipynb", "-p", "x", "1", "--points", "points-empty.json"],
         "one of the two"),
    Case("sweep: an axis without values", ["sweep", "params.ipynb", "-p", "x"], "-p x has no values"),
    Case("sweep: an axis twice", ["sweep", "params.ipynb", "-p", "x", "1", "-p", "x", "2"], "-p x is given twice"),
    Case("sweep: no points file", ["sweep", "params.ipynb", "--points", "missing.json"], "no points file"),
    Case("sweep: points not JSON", ["sweep", "params.ipynb", "--points", "points-bad.json"], "neither a JSON list"),
    Case("sweep: no points", ["sweep", "params.ipynb", "--points", "points-empty.json"], "non-empty list of objects"),
    Case("sweep: points not objects", ["sweep", "params.ipynb", "--points", "points-scalars.json"], "non-empty list"),
    Case("sweep: unknown axis in points", ["sweep", "params.ipynb", "--points", "points-unknown.json"],
         "no sweepable parameter nope"),
    Case("sweep: the profile as an axis", ["sweep", "params.ipynb", "-p", "profile", "smoke", "full"],
         "set the profile with --profile"),
    Case("sweep: text for a number", ["sweep", "params.ipynb", "-p", "x", "1", "abc"], "x takes float values"),
    Case("sweep: parallel 0", ["sweep", "params.ipynb", "-p", "x", "1", "--parallel", "0"], "--parallel must be"),
    Case("sweep: ray backend without Ray", ["sweep", "params.ipynb", "-p", "x", "1", "--backend", "ray"], "needs Ray"),
    Case("sweep: a store that is not a database", ["sweep", "params.ipynb", "-p", "x", "1"], "is damaged (file is not",
         env=store_named("garbage.db")),
    Case("sweep: a store with garbage inside", ["sweep", "params.ipynb", "-p", "x", "1"], "is damaged",
         env=store_named("damaged.db")),
    # -- the command line: dashboard and launch ----------------------------------------------------
    Case("dashboard: not an address", ["dashboard", "--address", "no-such-host.invalid"], "cannot bind the dashboard"),
    Case("dashboard: a port that is text", ["dashboard", "--port", "http"], "invalid int value: 'http'"),
    Case("dashboard: a store that is not a database", ["dashboard"], "move it aside", env=store_named("garbage.db")),
    Case("dashboard: a store with garbage inside", ["dashboard"], "is damaged", env=store_named("damaged.db")),
    Case("launch: no experiment", ["launch", "--nproc", "2"], "name an experiment"),
    # -- library calls a notebook makes (its parameters end up here) ------------------------------
    Case("corpus: missing", lambda d: data.load_corpus(str(d / "missing.txt")), "not found"),
    Case("corpus: empty file", lambda d: data.load_corpus(str(d / "empty.txt")), "is empty"),
    Case("corpus: only whitespace", lambda d: data.load_corpus(str(d / "blank.txt")), "is empty"),
    Case("corpus: a binary file", lambda d: data.load_corpus(str(d / "binary.txt")), "is not UTF-8 text (a NUL byte"),
    Case("corpus: not UTF-8", lambda d: data.load_corpus(str(d / "latin1.txt")), "is not UTF-8 text"),
    Case("corpus: a folder without text", lambda d: data.load_corpus(str(d / "no-text-here")), "no text files"),
    Case("model: not a folder", lambda d: models.load_model(str(d / "no" / "such" / "model")), "not a model directory"),
    Case("model: a Hub id not downloaded", lambda d: models.load_model("someone/never-downloaded-model"),
         "cannot load model 'someone/never-downloaded-model'"),
    Case("dtype: unknown", lambda d: models.resolve_dtype("int3", torch.device("cpu")), "unknown dtype 'int3'"),
    Case("tiny model: heads do not divide", lambda d: models.tiny_llama(d_model=65, n_heads=4), "must divide"),
    Case("split: fraction out of range", lambda d: data.train_val_split(torch.arange(100), 1.5), "between 0 and 1"),
    Case("blocks: text shorter than a block", lambda d: data.blocks(torch.arange(10), 64), "fewer than one block"),
    Case("batches: rank out of range", lambda d: next(data.batches(torch.arange(1000), 2, 8, rank=2, world_size=2)),
         "rank must be in"),
    Case("perplexity: one token", lambda d: evaluate.perplexity(tiny_lm(), torch.arange(1), 16, progress=False),
         "at least 2 held-out tokens"),
    Case("perplexity: stride beyond the window",
         lambda d: evaluate.perplexity(tiny_lm(), torch.arange(40), 16, stride=32), "stride must be in 1..context_len"),
    Case("profile: unknown preset", lambda d: SmallProfile.resolve("huge"), "unknown profile 'huge'"),
    Case("profile: unknown setting", lambda d: SmallProfile.resolve("smoke", stepz=3), "stepz"),
    Case("profile: wrong type", lambda d: SmallProfile.resolve("smoke", steps="many"), "must be"),
    Case("notebook: profile as a parameter", lambda d: notebook.run_notebook(d / "params.ipynb", {"profile": "full"}),
         "set the profile with --profile full"),
    Case("notebook: unknown profile", lambda d: notebook.check_profile("huge"), "unknown profile 'huge'"),
    Case("sweep: points file not a list", lambda d: sweep.load_points(d / "points-scalars.json"), "non-empty list"),
    Case("store: not a database", lambda d: RunStore(d / "garbage.db"), "is damaged (file is not a database)"),
    Case("store: garbage inside", lambda d: RunStore(d / "damaged.db"), "is damaged"),
]


def snapshot(home: Path) -> tuple:
    """What the store holds: its rows, and the files under the home (the WAL's helpers aside)."""
    rows = ()
    if (home / "runs.db").is_file():
        connection = sqlite3.connect(home / "runs.db")
        tables = ("runs", "metrics", "artifacts")
        try:
            rows = tuple(connection.execute(f"SELECT * FROM {table}").fetchall() for table in tables)
        except sqlite3.DatabaseError:  # a damaged store: its bytes, then
            rows = (hashlib.sha256((home / "runs.db").read_bytes()).hexdigest(),)
        connection.close()
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.name.endswith(("-wal", "-shm")))
    return rows, files


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    for name, make in FILES.items():
        make(tmp_path / name)
    home = tmp_path / "home"
    store = RunStore(home / "runs.db")  # a store with a finished run in it, which no case may touch
    with store.start_run("probe", "before", {"lr": 1e-3}) as run:
        run.log({"loss": 1.0}, 0)
    store.db.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input(case, case_dir, capsys, monkeypatch):
    home = case_dir / "home"
    for key, value in (case.env or {}).items():
        if value.startswith("@store:"):  # a home whose store is one of the damaged files
            home = case_dir / "other-home"
            home.mkdir(exist_ok=True)
            (case_dir / value.removeprefix("@store:")).rename(home / "runs.db")
            value = str(home)
        monkeypatch.setenv(key, str(case_dir / value))
    before = snapshot(home) if home.is_dir() else None
    if isinstance(case.entry, list):
        try:
            code = cli.main(case.entry)
        except SystemExit as stop:  # argparse
            code = stop.code
        out, err = capsys.readouterr()
        assert code == case.code, err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert case.expect in err, err
    else:
        with pytest.raises(WorkbenchError) as raised:
            case.entry(case_dir)
        message = str(raised.value)
        assert "\n" not in message and case.expect in message, message
    if before is not None:
        assert snapshot(home) == before


def test_table_covers_the_issue():
    assert len(CASES) >= 62


def test_environment_faults_are_one_line(case_dir, capsys, monkeypatch):
    """A full disk while a notebook runs, and a store locked by another process: one line, code 2."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(case_dir / "home" / "notebooks" / "x.ipynb"))

    monkeypatch.setattr(notebook, "run_notebook", full)
    assert cli.main(["run", "params.ipynb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "free some space" in err

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(notebook, "run_notebook", locked)
    assert cli.main(["run", "params.ipynb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the run store failed (database is locked)" in err


def test_a_read_only_store_can_still_be_read(case_dir, monkeypatch):
    """A store sqlite cannot open for writing (read-only file or folder) opens read-only; writes say why not."""
    from workbench import runs

    real = runs._connect

    def refuse(path):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(runs, "_connect", refuse)
    store = RunStore(case_dir / "home" / "runs.db")
    assert store.readonly and list(store.runs()["name"]) == ["before"]
    with pytest.raises(WorkbenchError, match="is read-only here"):
        store.start_run("probe", "after")
    monkeypatch.setattr(runs, "_connect", real)


def test_points_and_parameters_files_refused_before_any_write(case_dir):
    """The library form of the sweep: nothing is written when a point is bad."""
    before = snapshot(case_dir / "home")
    with pytest.raises(WorkbenchError, match="x takes float values"):
        sweep.run_sweep(case_dir / "params.ipynb", [{"x": 1.0}, {"x": "abc"}])
    assert snapshot(case_dir / "home") == before
    assert json.loads((case_dir / "points-unknown.json").read_text()) == [{"nope": 1}]


def test_parameter_values_are_never_executed(case_dir):
    """Values are read as Python literals or kept as text: a payload is a string, nothing runs."""
    for payload in ["__import__('os').system('touch pwned')", "open('pwned', 'w')", "exec('1')", "[x for x in ()]"]:
        assert notebook.parse_value(payload) == payload
    assert notebook.parse_value("[8, 32]") == [8, 32] and notebook.parse_value("3e-4") == 3e-4
    assert notebook.parse_value("false") is False and notebook.parse_value("True") is True  # JSON's and Python's
    assert not (case_dir / "pwned").exists()
