"""Launch a pretraining run on N GPUs (or N CPU processes) with torchrun, logged from rank 0.

    python -m workbench launch --nproc 2 pretrain --size 47m --steps 500
    torchrun --standalone --nproc_per_node 2 -m workbench.launch pretrain --size 47m --steps 500   # the same

Every rank builds the same model (same seed; DDP broadcasts rank 0's weights anyway), trains on
its slice of each global batch of `--batch-size` x N sequences, and rank 0 alone writes the run
store: metrics every `--log-every` steps, held-out perplexity, the checkpoint.

From a notebook, whose kernel may already hold CUDA (a process that touched CUDA can't fork GPU
workers), start it as a subprocess and follow its metrics from the run store as they arrive:

    job = launch(2, ["pretrain", "--size", "47m", "--steps", "500"])
    for rows in job.follow():          # DataFrames of new metric rows (run_id, step, key, value)
        print(rows.tail(1))
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from . import distributed
from .errors import WorkbenchError
from .models import MODEL_SIZES
from .paths import home

COMPILE = {"auto": None, "on": True, "off": False}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun ... -m workbench.launch", description="one rank of a workbench training job"
    )
    experiments = parser.add_subparsers(dest="experiment", required=True)
    pretrain = experiments.add_parser("pretrain", help="train a LLaMA from scratch (or continue a model) on a corpus")
    pretrain.add_argument("--size", default="47m", choices=sorted(MODEL_SIZES), help="a fresh LLaMA of this size")
    pretrain.add_argument("--model", default=None, help="continue training this model instead (e.g. smollm2-135m)")
    pretrain.add_argument(
        "--corpus", default="python-docs", help="'python-docs' (embedded), a text file or folder, or hf:NAME"
    )
    pretrain.add_argument("--steps", type=int, default=200)
    pretrain.add_argument("--batch-size", type=int, default=32, help="sequences per rank per micro-step")
    pretrain.add_argument("--block-len", type=int, default=512)
    pretrain.add_argument("--grad-accum", type=int, default=1)
    pretrain.add_argument("--lr", type=float, default=1e-3)
    pretrain.add_argument("--warmup", type=int, default=20)
    pretrain.add_argument("--log-every", type=int, default=10)
    pretrain.add_argument("--eval-every", type=int, default=None)
    pretrain.add_argument("--eval-windows", type=int, default=16, help="held-out windows for perplexity")
    pretrain.add_argument("--compile", default="auto", choices=sorted(COMPILE))
    pretrain.add_argument("--strategy", default="ddp", help="only 'ddp' (FSDP is not supported)")
    pretrain.add_argument("--no-checkpoint", dest="checkpoint", action="store_false")
    pretrain.add_argument("--seed", type=int, default=0)
    pretrain.add_argument("--name", default=None)
    pretrain.add_argument(
        "--tag", default=None, help="stored with the run's parameters, to find it again (launch() sets it)"
    )
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse and check an experiment's arguments (also in the parent, before any worker starts)."""
    from .train import TrainConfig

    args = build_parser().parse_args(argv)
    args.config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        warmup_steps=min(args.warmup, args.steps),
        grad_accum=args.grad_accum,
        log_every=args.log_every,
        eval_every=args.eval_every,
        compile=COMPILE[args.compile],
        strategy=args.strategy,
        checkpoint=args.checkpoint,
    )  # raises WorkbenchError on a bad strategy or step count
    return args


def pretrain(args: argparse.Namespace) -> dict:
    from .data import batches, token_splits
    from .evaluate import perplexity
    from .models import load_model, tiny_llama
    from .notebook import SWEEP_VARIABLE
    from .runs import join_sweep, start_run
    from .train import train

    world = distributed.setup()
    join_sweep(os.environ.get(SWEEP_VARIABLE))  # launched from a notebook that is a sweep point: join its point
    if args.model:
        model, tokenizer = load_model(args.model, dtype="float32", device=world.device)
        model.requires_grad_(True)
    else:
        model, tokenizer = tiny_llama(**MODEL_SIZES[args.size], max_len=args.block_len, seed=args.seed)
        model.to(world.device)
    if not world.is_main:
        distributed.barrier()  # rank 0 tokenises and caches first; the others then read the cache
    splits = token_splits(args.corpus, tokenizer)
    if world.is_main:
        distributed.barrier()
    train_tokens, val_tokens = splits.train, splits.val
    stream = batches(
        train_tokens,
        args.batch_size,
        args.block_len + 1,
        world.device,
        seed=args.seed,
        rank=world.rank,
        world_size=world.size,
    )

    def evaluate(model) -> dict[str, float]:
        ppl = perplexity(
            model,
            val_tokens,
            context_len=args.block_len,
            batch_size=args.batch_size,
            max_windows=args.eval_windows,
            progress=False,
        )
        return {"val_ppl": ppl["ppl"]}

    params = {k: v for k, v in vars(args).items() if k != "config"} | {
        "world_size": world.size,
        "global_batch": args.batch_size * world.size,
    }
    run = (
        start_run("pretrain", args.name or f"{args.model or args.size} on {world.size} x {world.device.type}", params)
        if world.is_main
        else None
    )
    try:
        metrics = train(model, stream, args.config, run=run, evaluate=evaluate)
        if run is not None:
            run.finish("finished", summary=metrics)
            shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items())
            print(f"run {run.id} finished on {world.size} process(es): {shown} (run store: {run.store.path})")
        return metrics
    except Exception as error:
        if run is not None:
            run.finish("failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        distributed.teardown()


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        pretrain(args)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


# -- the parent side: torchrun command, notebook helper -----------------------------------------
def command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line for `nproc` processes on this machine."""
    if nproc < 1:
        raise WorkbenchError(f"--nproc must be >= 1, got {nproc}")
    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise WorkbenchError(
            f"--nproc {nproc} but only {torch.cuda.device_count()} GPUs are visible: use at most that many"
        )
    parse(argv)  # fail here, in one line, rather than in every rank
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "workbench.launch",
        *argv,
    ]


@dataclass
class Job:
    """A launched training job: its process, the tag that finds its run, its output log."""

    process: subprocess.Popen
    tag: str
    log: Path

    def run_id(self) -> int | None:
        from .runs import store

        runs = store().runs()
        mine = runs[[params.get("tag") == self.tag for params in runs["params"]]] if len(runs) else runs
        return int(mine["id"].iloc[0]) if len(mine) else None

    def follow(self, poll_s: float = 2.0) -> Iterator[pd.DataFrame]:
        """New metric rows of the job's run as they are logged, until the job ends."""
        from .runs import store

        after = 0
        while True:
            finished = self.process.poll() is not None
            run_id = self.run_id()
            if run_id is not None:
                rows = store().metrics([run_id], after_id=after)
                if len(rows):
                    after = int(rows["id"].max())
                    yield rows
            if finished:
                break
            time.sleep(poll_s)
        self.check()

    def wait(self) -> int:
        self.process.wait()
        self.check()
        return self.process.returncode

    def check(self) -> None:
        if self.process.returncode:
            tail = "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-5:]).strip()
            raise WorkbenchError(
                f"the launched job failed (exit {self.process.returncode}); see {self.log}: "
                f"{tail.splitlines()[-1] if tail else ''}"
            )


def launch(nproc: int, argv: list[str]) -> Job:
    """Start `torchrun -m workbench.launch *argv` on `nproc` processes, in the background."""
    tag = uuid.uuid4().hex[:12]
    argv = [*argv, "--tag", tag]
    log = home() / "launch" / f"{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as output:
        process = subprocess.Popen(command(nproc, argv), stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy())
    return Job(process, tag, log)


if __name__ == "__main__":
    raise SystemExit(main())
