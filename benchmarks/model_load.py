"""Model load times: first load (dequantise the embedded GGUF, write the cache) against cached load.

    python benchmarks/model_load.py

Runs both in one process against a fresh temporary cache, so the two numbers are side by side.
"""

import os
import tempfile
import time

import torch


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["WORKBENCH_CACHE"] = cache
        from workbench.models import load_model

        start = time.perf_counter()
        load_model(device="cpu")
        first = time.perf_counter() - start
        start = time.perf_counter()
        load_model(device="cpu")
        cached = time.perf_counter() - start
    print(f"torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    print(f"{'first load (GGUF -> cache)':28s} {first:6.1f} s")
    print(f"{'cached load':28s} {cached:6.1f} s")
    print(f"{'speed-up':28s} {first / cached:6.1f} x")


if __name__ == "__main__":
    main()
