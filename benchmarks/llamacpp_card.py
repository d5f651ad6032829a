"""The llama.cpp Q4_1 reference card beside float32 SmolLM2's, on the frontier's common evaluation.

    python benchmarks/llamacpp_card.py                   # full card settings (32 x 512 windows), all cores
    python benchmarks/llamacpp_card.py --threads 1       # torch and llama.cpp both at one thread
    python benchmarks/llamacpp_card.py --profile smoke   # 4 x 64 windows, seconds

Writes both cards into a run store (`--store`, default a temporary one) exactly as notebook 08 writes its
reference cards: float32 through `cards.write_card`, the GGUF file through `cpu.llamacpp.write_card`, their
speeds from one `measure.model_speeds` call (the same interleaved rounds, the same thread count), then
prints the two rows, the perplexity gap (the slow test's tolerance comes from it) and the load average.
Needs llama-cpp-python (`pip install 'workbench[llamacpp]'`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from workbench import cards
from workbench.cpu import llamacpp
from workbench.errors import WorkbenchError
from workbench.measure import model_speeds
from workbench.models import GGUF_FILE, gguf_dir, load_model
from workbench.runs import RunStore

COLUMNS = ["arm", "weight_bytes", "kv_bytes_per_token", "code_ppl", "english_ppl", "prefill_tok_s",
           "decode_b1_tok_s", "decode_b1_spread", "decode_b8_tok_s", "cloze_acc", "device"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=["smoke", "full"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--store", default=None, help="a run store's file (default: a temporary one)")
    args = parser.parse_args()
    if not llamacpp.installed():
        raise WorkbenchError("llama-cpp-python is not installed: pip install 'workbench[llamacpp]'")
    torch.set_num_threads(args.threads)
    settings = cards.CardProfile.resolve(args.profile)
    store = RunStore(args.store or Path(tempfile.mkdtemp()) / "runs.db")
    model, tokenizer = load_model(dtype="float32", device="cpu")
    engine = llamacpp.engine(gguf_dir() / GGUF_FILE, args.threads)
    load = os.getloadavg()[0]
    begin = time.perf_counter()
    speeds = model_speeds({"float32": model.eval(), llamacpp.NAME: engine}, settings.shapes(torch.device("cpu")))
    with store.start_run("frontier", "reference SmolLM2-135M float32") as run:
        float32 = cards.write_card(run, model, idea="reference", arm="SmolLM2-135M float32", tokenizer=tokenizer,
                                   profile=settings, precision="float32", speed=speeds["float32"])  # fmt: skip
    with store.start_run("frontier", f"reference SmolLM2-135M {llamacpp.NAME}") as run:
        q4_1 = llamacpp.write_card(run, engine.gguf_file, tokenizer, settings, arm=f"SmolLM2-135M {llamacpp.NAME}",
                                   threads=args.threads, speed=speeds[llamacpp.NAME])  # fmt: skip
    table = cards.load_cards(store).set_index("run_id").loc[[float32.run_id, q4_1.run_id]]
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table[[c for c in COLUMNS if c in table]].astype(object).fillna("n/a").to_string(index=False))
    for key in ("code_ppl", "english_ppl"):
        print(f"{key}: llama.cpp Q4_1 {getattr(q4_1, key):.4f} vs float32 {getattr(float32, key):.4f} "
              f"({100 * (getattr(q4_1, key) / getattr(float32, key) - 1):+.3f}%)")  # fmt: skip
    ratio = q4_1.speed["decode_b1_tok_s"] / float32.speed["decode_b1_tok_s"]
    print(f"decode batch 1: {ratio:.2f}x float32's; {settings.eval_spec} windows, {args.threads} threads; "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after; {time.perf_counter() - begin:.0f} s; "
          f"store {store.path}")  # fmt: skip


if __name__ == "__main__":
    main()
