"""The CPU-inference experiment: precisions, grouped-query attention, and short from-scratch training.

    experiment = CpuExperiment("full")
    precisions = experiment.precision_table()    # tokens/s per precision x threads, perplexity, agreement
    experiment.chat("What is a list comprehension?", on_text=print)   # streaming demo
    gqa = experiment.gqa_table()                 # KV-cache bytes and decode tokens/s vs context
    trained = experiment.train_table()           # MHA/GQA/MQA at equal parameters + GEB-shaped (GPU)

The speed and quality of each precision are measured on the CPU of whatever machine runs this
(`cpu_label`; on the GPU machine that is its host CPU), the training on the GPU when there is one.
Every arm is a run of kind "cpu" in the run store, in one sweep; float32 is the reference.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import cards
from ..data import batches, blocks, check_epochs, token_splits
from ..deadline import ArmClock
from ..evaluate import perplexity
from ..generate import SampleConfig, sample
from ..models import DEFAULT_MODEL, GGUF_FILE, gguf_dir, load_model, resolve_device, tiny_llama
from ..runs import RunKind, start_run
from ..train import TrainConfig, train
from . import llamacpp
from .decode import measure_phases, stream_chat
from .gqa import Shape, build, decode_speed_vs_context, variants
from .profile import CpuProfile
from .quantize import DESCRIPTIONS, available, next_token_quality, quantize, weight_bytes

KIND = RunKind(
    "cpu",
    headline="decode_tok_s",
    goal="max",
    description="CPU inference (GEB-1.3B): decode tokens/s per precision, thread count and attention variant",
)

Callback = Callable[[str, int, dict[str, float]], None]


def cpu_label() -> str:
    """The CPU these numbers were measured on, e.g. "AMD EPYC, 2 cores"."""
    name = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


class CpuExperiment:
    """Holds the model (float32, on the CPU), its tokenizer and the held-out text of `profile.corpus`."""

    def __init__(self, profile: str | CpuProfile = "smoke", progress: bool = True, **overrides):
        self.profile = profile = CpuProfile.resolve(profile, **overrides)
        self.progress = progress
        if profile.model == "tiny":
            self.model, self.tokenizer = tiny_llama(max_len=4096, seed=profile.seed)
            self.model.eval()
        else:
            self.model, self.tokenizer = load_model(profile.model, dtype="float32", device="cpu")
        self.model.requires_grad_(False)
        splits = token_splits(profile.corpus, self.tokenizer)
        if profile.train:
            check_epochs(profile, profile.train_tokens_per_arm, splits.n_train)
        self.train_tokens, self.val_tokens = splits.train, splits.val
        self.cpu = cpu_label()
        self.threads = tuple(sorted({min(n, os.cpu_count() or 1) for n in profile.threads}))  # at most every core
        self.precisions = [p for p in profile.precisions if available(p)]
        self.skipped = [p for p in profile.precisions if not available(p)]
        # llama.cpp runs the default model's GGUF file, at batch 1, where llama-cpp-python is installed
        self.llama_cpp = profile.llamacpp and profile.model == DEFAULT_MODEL and profile.batch == 1
        if self.llama_cpp and not llamacpp.installed():
            self.llama_cpp = False
            self.skipped.append("llama.cpp (pip install 'workbench[llamacpp]')")
        self.sweep = f"cpu-{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self._models: dict[str, torch.nn.Module] = {}

    def params(self, **extra) -> dict:
        return self.profile.as_dict() | {"cpu": self.cpu} | extra

    def prompt(self) -> torch.Tensor:
        """`batch` copies of the first `prompt_len` held-out tokens [B, T] (real text, so no EOS stop)."""
        return self.val_tokens[: self.profile.prompt_len][None].repeat(self.profile.batch, 1)

    def quantized(self) -> dict[str, torch.nn.Module]:
        """Every available precision's copy of the model (built once)."""
        for precision in self.precisions:
            if precision not in self._models:
                self._models[precision] = quantize(self.model, precision)
        return self._models

    # -- precisions ----------------------------------------------------------------------------
    def precision_table(self) -> pd.DataFrame:
        """One row per precision x thread count: prefill and decode tokens/s (median, spread), weight
        bytes, held-out perplexity and its change, next-token and greedy agreement with float32."""
        p = self.profile
        models = self.quantized()
        windows = blocks(self.val_tokens, p.ppl_context)[: p.ppl_windows]
        prompt = self.prompt()
        quality, greedy = {}, {}
        for precision, model in tqdm(models.items(), desc="quality", disable=not self.progress):
            reference = quality["float32"]["argmax"] if "float32" in quality else None
            quality[precision] = next_token_quality(model, windows, reference)
            greedy[precision] = sample(model, prompt[:1], SampleConfig(max_new_tokens=p.agreement_tokens))[
                0, prompt.shape[1] :
            ]
        gguf = gguf_dir() / GGUF_FILE if self.llama_cpp else None
        external = {llamacpp.NAME: llamacpp.phases(gguf, prompt[0].tolist(), p.new_tokens)} if gguf else {}
        speeds = measure_phases(models, prompt, p.new_tokens, self.threads, p.rounds, p.warmup, external)
        base_ppl = quality["float32"]["ppl"]
        rows = []
        for precision, model in models.items():
            same = (greedy[precision] == greedy["float32"]).tolist()
            common = {
                "precision": precision,
                "weight_mb": weight_bytes(model) / 1e6,
                "ppl": quality[precision]["ppl"],
                "ppl_change_pct": 100 * (quality[precision]["ppl"] / base_ppl - 1),
                "next_token_agreement": quality[precision]["agreement"],
                "greedy_agreement": sum(same) / len(same),
                "first_divergence": same.index(False) if False in same else None,
            }
            precision_rows = [common | {"threads": n} | speeds[(precision, n)].as_row() for n in self.threads]
            best = max(precision_rows, key=lambda row: row["threads"])
            with start_run(
                KIND, precision, self.params(part="precision", precision=precision), sweep=self.sweep
            ) as run:
                if precision == "float32":
                    run.mark_reference()
                run.update_summary(
                    decode_tok_s=best["decode_tok_s"],
                    prefill_tok_s=best["prefill_tok_s"],
                    ppl=common["ppl"],
                    description=DESCRIPTIONS[precision],
                    rows=precision_rows,
                )
                cards.write_card(run, model, idea="cpu", arm=precision, tokenizer=self.tokenizer, profile=p.name,
                                 precision=precision, params_of=self.model, corpus=p.corpus)  # fmt: skip
            rows += precision_rows
        if gguf:
            rows += self._llama_cpp_rows(gguf, speeds, windows, quality["float32"])
        table = pd.DataFrame(rows)
        reference = table[table["precision"] == "float32"].set_index("threads")["decode_tok_s"]
        table["decode_speedup"] = table["decode_tok_s"] / table["threads"].map(reference)
        table.attrs["cpu"], table.attrs["rounds"] = self.cpu, p.rounds
        return table

    def _llama_cpp_rows(self, gguf: Path, speeds: dict, windows: torch.Tensor, float32: dict) -> list[dict]:
        """llama.cpp's rows of the precision table (one per thread count; quality on the same windows,
        against `float32`'s quality), and its run."""
        quality = llamacpp.quality(gguf, windows, float32["argmax"])
        common = {
            "precision": llamacpp.NAME, "weight_mb": gguf.stat().st_size / 1e6, "ppl": quality["ppl"],
            "ppl_change_pct": 100 * (quality["ppl"] / float32["ppl"] - 1), "next_token_agreement": quality["agreement"],
        }  # fmt: skip
        rows = [common | {"threads": n} | speeds[(llamacpp.NAME, n)].as_row() for n in self.threads]
        best = max(rows, key=lambda row: row["threads"])
        params = self.params(part="precision", precision=llamacpp.NAME)
        with start_run(KIND, llamacpp.NAME, params, sweep=self.sweep) as run:
            run.update_summary(
                decode_tok_s=best["decode_tok_s"], prefill_tok_s=best["prefill_tok_s"], ppl=quality["ppl"],
                description="llama.cpp (llama-cpp-python) on the model's own Q4_1 GGUF file", rows=rows,
            )  # fmt: skip
        return rows

    def chat(self, question: str, on_text: Callable[[str], None] | None = None, precision: str = "int8") -> str:
        """Stream an answer from `profile.chat_model`'s `precision` copy (float32 if that is not available)."""
        if self.profile.chat_model == self.profile.model:
            model, tokenizer = self.quantized().get(precision, self.model), self.tokenizer
        else:
            model, tokenizer = load_model(self.profile.chat_model, dtype="float32", device="cpu")
            model = quantize(model, precision) if available(precision) else model
        config = SampleConfig(max_new_tokens=self.profile.chat_tokens)
        print_piece = on_text or (lambda piece: print(piece, end="", flush=True))
        return stream_chat(model, tokenizer, question, config, print_piece)

    # -- grouped-query attention on the CPU -------------------------------------------------------
    def gqa_shapes(self) -> list[Shape]:
        p = self.profile
        reference = Shape(p.gqa_layers, p.gqa_d_model, p.gqa_heads, p.gqa_kv_heads[0], p.gqa_d_ff, len(self.tokenizer))
        return variants(reference, p.gqa_kv_heads)

    def gqa_table(self) -> pd.DataFrame:
        """Per variant and context: KV-cache bytes (formula and measured tensors) and decode tokens/s."""
        p = self.profile
        rows = decode_speed_vs_context(
            self.gqa_shapes(), p.gqa_contexts, p.gqa_decode_tokens, p.rounds, p.warmup, p.gqa_threads, p.seed
        )
        table = pd.DataFrame(rows)
        for variant, group in table.groupby("variant", sort=False):
            longest = group.loc[group["context"].idxmax()]
            with start_run(
                KIND, f"decode {variant}", self.params(part="gqa", variant=variant), sweep=self.sweep
            ) as run:
                run.update_summary(
                    decode_tok_s=float(longest["decode_tok_s"]),
                    context=int(longest["context"]),
                    kv_bytes=int(longest["kv_bytes_measured"]),
                    rows=group.to_dict(orient="records"),
                )
        table.attrs["cpu"], table.attrs["rounds"] = self.cpu, p.rounds
        return table

    # -- from-scratch training (GPU in the full profile) -----------------------------------------
    def train_arms(self) -> list[tuple[str, Shape, tuple[int, ...]]]:
        """(name, shape, seeds): the variants at equal parameters, every seed, and the GEB-shaped model, one seed."""
        p = self.profile
        vocab = len(self.tokenizer)
        reference = Shape(
            p.train_layers,
            p.train_d_model,
            p.train_heads,
            p.train_kv_heads[0],
            p.train_d_ff,
            vocab,
            max_len=p.block_len,
        )
        arms = [(shape.name, shape, p.seeds) for shape in variants(reference, p.train_kv_heads)]
        geb = Shape(
            p.geb_layers,
            p.geb_d_model,
            p.geb_heads,
            p.geb_kv_heads,
            p.geb_d_ff,
            vocab,
            tie_embeddings=False,
            max_len=p.block_len,
        )
        return arms + [(f"GEB-shaped {geb.name}, untied", geb, p.seeds[:1])]

    def train_table(self, callback: Callback | None = None, clock: ArmClock | None = None) -> pd.DataFrame:
        """Train every arm on `steps` x `batch_size` x `block_len` tokens; held-out loss per seed.

        `callback(arm, step, metrics)` receives the validation loss at every evaluation (live curves).
        `clock` (default: the runner's deadline, `workbench.deadline`) skips the arms that would end past the
        time limit; their labels are in `table.attrs["not_trained"]`. The order stays variant by variant: the
        equivalence pairs seeds, so a variant cut short keeps the seeds it trained, and the GEB-shaped arm,
        which no verdict pairs, is last.
        """
        clock = clock or ArmClock()
        device = resolve_device("auto")
        rows = []
        for name, shape, seeds in self.train_arms():
            for seed in seeds:
                label = f"{name} seed {seed}"
                if not clock.admit(label, name):
                    continue
                with clock.timing(name):
                    rows.append(self._train_arm(name, shape, seed, callback))
        table = pd.DataFrame(rows)
        table.attrs["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else self.cpu
        table.attrs["not_trained"] = clock.announce()
        return table

    def _train_arm(self, name: str, shape: Shape, seed: int, callback: Callback | None) -> dict:
        """One arm and seed trained from scratch: its row of the training table (and its run and card)."""
        p = self.profile
        device = resolve_device("auto")
        train_unique = len(self.train_tokens)
        tokens_seen = p.steps * p.batch_size * p.block_len
        label = f"{name} seed {seed}"
        model = build(shape, seed, self.tokenizer).to(device)
        params = sum(q.numel() for q in {id(q): q for q in model.parameters()}.values())
        evaluate = self._evaluator(label, callback)
        config = TrainConfig(
            steps=p.steps,
            lr=p.lr,
            warmup_steps=p.warmup_steps,
            log_every=max(1, p.steps // 20),
            eval_every=p.eval_every,
            checkpoint=False,
            compile=p.compile,
        )
        with start_run(
            KIND, f"train {label}", self.params(part="train", variant=name, train_seed=seed), self.sweep
        ) as run:
            metrics = train(
                model,
                batches(self.train_tokens, p.batch_size, p.block_len + 1, device, seed),
                config,
                run=run,
                evaluate=evaluate,
                progress=self.progress,
            )
            row = {
                "variant": name,
                "seed": seed,
                "n_kv_heads": shape.n_kv_heads,
                "params": params,
                "tied": shape.tie_embeddings,
                "val_loss": metrics["val_loss"],
                "val_ppl": metrics["val_ppl"],
                "train_loss": metrics["train_loss"],
                "tokens": tokens_seen,
                "epochs": tokens_seen / train_unique,
            }
            run.update_summary(**{k: v for k, v in row.items() if k not in ("variant", "seed")})
            cards.write_card(run, model, idea="cpu", arm=f"train {label}", tokenizer=self.tokenizer,
                             profile=p.name, training_tokens=tokens_seen, training_context=p.block_len,
                             corpus=p.corpus, extra={"n_kv_heads": shape.n_kv_heads})  # fmt: skip
        del model
        return row

    def _evaluator(self, label: str, callback: Callback | None) -> Callable[[torch.nn.Module], dict[str, float]]:
        """Held-out loss on `eval_windows` windows of `block_len` tokens (bf16 autocast on a GPU)."""
        p = self.profile
        calls = [0]

        def evaluate(model: torch.nn.Module) -> dict[str, float]:
            device = next(model.parameters()).device
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
            with autocast:
                result = perplexity(
                    model,
                    self.val_tokens,
                    context_len=p.block_len,
                    batch_size=8,
                    max_windows=p.eval_windows,
                    progress=False,
                )
            calls[0] += 1
            metrics = {"val_loss": result["nll"], "val_ppl": result["ppl"]}
            if callback is not None:
                callback(label, min(calls[0] * p.eval_every, p.steps), metrics)
            return metrics

        return evaluate
