"""DDP under torchrun, on a CPU: 2 gloo processes equal one process with the same global batch.

Run as a script, this file is one rank of the job (torchrun ... tests/test_ddp.py OUT PER_RANK_BATCH).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # torchrun processes

TIMEOUT_S = 240


def worker(out: Path, batch_size: int) -> None:
    from workbench import data, distributed
    from workbench.models import tiny_llama
    from workbench.train import TrainConfig, train

    world = distributed.setup()
    model, _ = tiny_llama(
        n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=128, seed=world.rank
    )  # DDP syncs rank 0's
    tokens = torch.randint(0, 128, (20_000,), generator=torch.Generator().manual_seed(0))
    stream = data.batches(tokens, batch_size, 17, seed=1, rank=world.rank, world_size=world.size)
    config = TrainConfig(steps=6, lr=1e-2, warmup_steps=1, grad_accum=2, log_every=3, checkpoint=False)
    metrics = train(model, stream, config, progress=False)
    torch.save(
        {"state": model.state_dict(), "loss": metrics["train_loss"], "threads": torch.get_num_threads()},
        out / f"rank{world.rank}-of-{world.size}.pt",
    )
    distributed.teardown()


def _run(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_gloo_ranks_equal_one_process_with_the_global_batch(tmp_path):
    script = str(Path(__file__).resolve())
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            script,
            str(tmp_path),
            "4",
        ],
        tmp_path,
    )
    _run([sys.executable, script, str(tmp_path), "8"], tmp_path)
    rank0, rank1, alone = (torch.load(tmp_path / name) for name in ("rank0-of-2.pt", "rank1-of-2.pt", "rank0-of-1.pt"))
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key  # gradients were synchronised: the copies never diverge
        assert torch.allclose(value, alone["state"][key], atol=2e-5), key
    assert rank0["loss"] == rank1["loss"] == pytest.approx(alone["loss"], rel=1e-5)  # logged loss: the mean over ranks
    assert rank0["threads"] == max(1, (os.cpu_count() or 1) // 2)  # ranks split the cores
    from workbench.models import tiny_llama

    init, _ = tiny_llama(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=128, seed=0)
    assert not torch.allclose(
        init.state_dict()["model.layers.0.mlp.up_proj.weight"], alone["state"]["model.layers.0.mlp.up_proj.weight"]
    )


def test_launch_runs_torchrun_and_rank0_logs_to_the_store(tmp_path, monkeypatch):
    from workbench.launch import launch
    from workbench.runs import store

    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 400)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    job = launch(
        2,
        [
            "pretrain",
            "--size",
            "tiny",
            "--corpus",
            str(text),
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--block-len",
            "32",
            "--log-every",
            "2",
            "--eval-windows",
            "2",
            "--no-checkpoint",
            "--name",
            "ddp launch test",
        ],
    )
    rows = [frame for frame in job.follow(poll_s=0.5)]
    runs = store().runs(kind="pretrain")
    mine = runs[runs["id"] == job.run_id()].iloc[0]
    assert len(runs[runs["name"] == "ddp launch test"]) == 1  # only rank 0 opened a run
    assert mine["status"] == "finished" and mine["params"]["world_size"] == 2 and mine["summary"]["world_size"] == 2
    history = store().history(job.run_id())
    assert list(history["step"]) == [2, 4] and history["val_ppl"].notna().iloc[-1]
    assert rows and sum(len(frame) for frame in rows) == len(store().metrics([job.run_id()]))


def test_launch_refuses_fsdp_before_starting_workers(capsys):
    from workbench.cli import main

    assert main(["launch", "--nproc", "2", "pretrain", "--strategy", "fsdp"]) == 2
    assert "FSDP is not supported by the workbench loop; use DDP" in capsys.readouterr().err


if __name__ == "__main__":
    worker(Path(sys.argv[1]), int(sys.argv[2]))
