"""Masked diffusion (MDM) against autoregressive (ARM) models of the same architecture, size and data.

Over 400 lines because it holds four experiments (scaling, sampling, guidance, reversal) that share one
model factory and one training step; each is one function, readable on its own.

Four experiments, each writing its runs to the store (one sweep per experiment object):
- `scaling`: both arms at every size × FLOP budget × seed (C = 6·N·D, N non-embedding), trained by
  `workbench.train.train` (compiled, CUDA graphs on a GPU, for both losses) on the same blocks of
  text; held-out NLL (ARM, exact) against the ELBO (MDM, an upper bound on its NLL) of the same
  tokens given the block's first token.
- `sampling`: continuations of held-out prompts from the largest ARMs (KV cache) and the largest MDM
  (both samplers, several step counts); quality as perplexity under a judge model and unigram
  entropy; wall time per sample at several batch sizes, interleaved (`workbench.measure`).
- `guidance`: the MDM's 4-way multiple-choice and cloze accuracy on held-out text (`workbench.zeroshot`,
  chain-rule likelihood) against the guidance strength w, half the items to tune w and half to judge
  it; the likelihood of true continuations (ELBO and chain rule) and generation quality beside.
- `reversal`: both arms pretrained on the corpus (the scaling part's checkpoints, or trained now),
  then fine-tuned on the same fictitious-people facts for the same steps (SMDM / Berglund et al.:
  30 paraphrases, a "both directions" subset, containment scoring).
Every from-scratch number comes with its epochs (tokens seen / unique training tokens). Nothing here draws.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import pandas as pd
import torch
from torch import nn

from .. import cards, data, zeroshot
from ..evaluate import sequence_nll
from ..measure import interleaved
from ..models import (
    count_parameters,
    load_model,
    load_tokenizer,
    resolve_device,
    tiny_llama,
)
from ..runs import RunKind, start_run
from ..train import TrainConfig, causal_lm_loss, train
from . import mdm, reversal
from .guidance import guided, zero_shot_loglik
from .profile import SIZES, DiffusionProfile
from .samplers import SamplerConfig, Trace, autoregressive_generate, diffusion_generate, unmask

KIND = RunKind(
    "diffusion",
    headline="val_nll",
    goal="min",
    description="ARM vs masked diffusion: held-out NLL per token (ARM exact; MDM: Monte Carlo ELBO, an upper bound)",
)
REVERSAL_KIND = RunKind(
    "diffusion-reversal",
    headline="reverse_acc",
    goal="max",
    description="reversal curse: answer contained in the generation, on the direction never seen in fine-tuning",
)
Callback = Callable[[str, float, float], None]  # (curve name, training FLOPs, held-out nats/token)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def unigram_entropy(tokens: torch.Tensor) -> float:
    """Mean over rows of the entropy (nats) of each row's token frequencies: low = repetitive samples."""
    values = []
    for row in tokens.cpu():
        counts = torch.unique(row, return_counts=True)[1].double()
        p = counts / counts.sum()
        values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values)


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters outside the token embedding and the output layer (SMDM's N: its configs are named by it)."""
    embedding = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return count_parameters(model) - sum(p.numel() for p in model.parameters() if id(p) in embedding)


def halves(tasks: zeroshot.ZeroShotTasks) -> tuple[zeroshot.ZeroShotTasks, zeroshot.ZeroShotTasks]:
    """Alternate items: the first half tunes w, the second judges it (no selection on the judged items)."""
    return (
        zeroshot.ZeroShotTasks(tasks.cloze[0::2], tasks.choice[0::2], tasks.seed),
        zeroshot.ZeroShotTasks(tasks.cloze[1::2], tasks.choice[1::2], tasks.seed),
    )


class DiffusionExperiment:
    """The data, the run sweep and the trained models shared by the four experiments (call them in order:
    `sampling` and `guidance` reuse the largest models `scaling` trained, or train just those)."""

    def __init__(self, settings: DiffusionProfile, progress: bool = True):
        self.settings, self.progress = settings, progress
        self.device = resolve_device("auto")
        self.device_name = torch.cuda.get_device_name(0) if self.device.type == "cuda" else "CPU"
        if settings.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(settings.cpu_threads)
        self.tokenizer = load_tokenizer()
        self.vocab = len(self.tokenizer)
        self.mask_id = self.vocab  # [M]: one row past the tokenizer's vocabulary
        splits = data.token_splits(settings.corpus, self.tokenizer)
        data.check_epochs(settings, settings.train_tokens_per_arm, splits.n_train)  # the reversal facts are not counted
        self.train_tokens, self.val_tokens = splits.train, splits.val
        self.val_blocks = data.blocks(self.val_tokens, settings.block_len)[: settings.eval_blocks].to(
            self.device
        )  # [n, T]
        self.sweep = f"diffusion-{settings.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.models: dict[tuple[str, str, float, int], nn.Module] = {}  # (arm, size, budget, seed)
        self.epochs: dict[str, float] = {}  # by run name: tokens seen / unique training tokens
        self.scaling_table: pd.DataFrame | None = None

    # -- models and their held-out loss ---------------------------------------------------------
    def new_model(self, arm: str, size: str, seed: int) -> nn.Module:
        if arm == "MDM":
            model, _ = mdm.masked_diffusion_llama(self.vocab, seed=seed, max_len=1024, **SIZES[size])
        else:
            model, _ = tiny_llama(vocab_size=self.vocab, seed=seed, max_len=1024, **SIZES[size])
        return model.to(self.device)

    @torch.no_grad()
    def held_out_nll(self, arm: str, model: nn.Module, blocks: torch.Tensor, samples: int) -> float:
        """Nats per token of blocks[:, 1:] given blocks[:, 0]: exact for the ARM, the MC ELBO for the MDM."""
        total = 0.0
        for start in range(0, len(blocks), 32):
            chunk = blocks[start : start + 32]
            if arm == "ARM":
                with _autocast(self.device):
                    total += float(sequence_nll(model, chunk[:, :-1], chunk[:, 1:]))
            else:
                total += float(
                    mdm.elbo(
                        mdm.denoiser(model), chunk, 1, self.mask_id, samples=samples, seed=self.settings.seed
                    ).sum()
                )
        return total / (len(blocks) * (blocks.shape[1] - 1))

    def train_arm(
        self, arm: str, size: str, budget: float, callback: Callback | None = None, seed: int | None = None
    ) -> tuple[nn.Module, dict]:
        """One arm at one size trained for `budget` FLOPs (6·N·tokens, N non-embedding) on the block stream
        of `seed` (both arms of a seed: the same initial-weight seed and the same blocks)."""
        s = self.settings
        seed = s.seeds[0] if seed is None else seed
        model = self.new_model(arm, size, seed)
        n_params, total_params = non_embedding_parameters(model), count_parameters(model)
        tokens_per_step = s.batch_size * s.block_len
        steps = max(1, round(budget / (6 * n_params * tokens_per_step)))
        blocks = data.batches(
            self.train_tokens, s.batch_size, s.block_len + 1, self.device, seed=seed
        )  # same blocks for both arms
        batches = blocks if arm == "ARM" else mdm.stochastic_length((b[:, :-1] for b in blocks), s.ssl_ratio, seed)
        loss_fn = causal_lm_loss if arm == "ARM" else mdm.diffusion_loss
        eval_every = max(1, steps // s.curve_points)
        config = TrainConfig(
            steps=steps,
            lr=s.lr,
            warmup_steps=max(1, int(s.warmup_fraction * steps)),
            weight_decay=s.weight_decay,
            log_every=max(1, min(50, steps // 10)),
            eval_every=eval_every,
            checkpoint=False,
            compile=s.compile,
        )
        name = f"{arm} {size} C={budget:.1e}"
        curve_blocks, evaluations = self.val_blocks[: s.curve_blocks], []

        def evaluate(model: nn.Module) -> dict[str, float]:
            evaluations.append(None)
            flops = 6 * n_params * tokens_per_step * min(len(evaluations) * eval_every, steps)
            value = self.held_out_nll(arm, model, curve_blocks, s.curve_samples)
            if callback is not None:
                callback(f"{name} seed {seed}" if len(s.seeds) > 1 else name, flops, value)
            return {"val_nll_curve": value, "flops": flops}

        params = s.as_dict() | {
            "arm": arm,
            "size": size,
            "budget_flops": budget,
            "n_params": n_params,
            "total_params": total_params,
            "steps": steps,
            "seed": seed,
        }
        with start_run(KIND, f"{name} seed {seed}", params=params, sweep=self.sweep) as run:
            metrics = train(model, batches, config, loss_fn=loss_fn, run=run, evaluate=evaluate, progress=self.progress)
            tokens = steps * tokens_per_step
            row = {
                "arm": arm,
                "size": size,
                "seed": seed,
                "non_emb_params": n_params,
                "total_params": total_params,
                "budget": budget,
                "flops": 6 * n_params * tokens,
                "flops_total": 6 * total_params * tokens,
                "steps": steps,
                "tokens": tokens,
                "epochs": tokens / len(self.train_tokens),
                "tokens_per_s": metrics.get("tokens_per_s", math.nan),
                "val_nll": self.held_out_nll(arm, model, self.val_blocks, s.elbo_samples),
                "run_id": run.id,
            }
            run.update_summary(**{k: v for k, v in row.items() if k not in ("arm", "size", "run_id")})
            is_mdm = arm == "MDM"  # its quality on the card: the ELBO bound, and its own zero-shot log-likelihood
            cards.write_card(run, model, idea="diffusion", arm=name, tokenizer=self.tokenizer,
                             profile=s.name, training_tokens=tokens, training_context=s.block_len, corpus=s.corpus,
                             mdm_nll=partial(self.held_out_nll, "MDM", samples=s.elbo_samples) if is_mdm else None,
                             mdm_loglik=zero_shot_loglik(model, length=s.block_len) if is_mdm else None,
                             extra={"budget_flops": budget, "seed": seed})  # fmt: skip
            self.epochs[name] = row["epochs"]
            if arm == "ARM" and size == s.sizes[-1] and budget == max(s.budgets) and seed == s.seeds[0]:
                run.mark_reference()
        return model, row

    # -- 1. mini scaling -----------------------------------------------------------------------
    def scaling(self, callback: Callback | None = None) -> pd.DataFrame:
        """Both arms at every size × budget × seed; keeps the models that sampling, guidance and the reversal
        test start from (the largest size; the reversal size at the largest budget)."""
        s, rows = self.settings, []
        for seed in s.seeds:
            for size in s.sizes:
                for budget in s.budgets:
                    for arm in ("ARM", "MDM"):
                        model, row = self.train_arm(arm, size, budget, callback, seed=seed)
                        rows.append(row)
                        if size == s.sizes[-1] or (size == s.reversal_size and budget == max(s.budgets)):
                            self.models[(arm, size, budget, seed)] = model
        self.scaling_table = pd.DataFrame(rows)
        return self.scaling_table

    def sampling_models(self, callback: Callback | None = None, seed: int | None = None) -> dict[str, nn.Module]:
        """The largest size, one seed: ARM at every budget, MDM at the largest (trained now unless `scaling` ran)."""
        size, top = self.settings.sizes[-1], max(self.settings.budgets)
        seed = self.settings.seeds[0] if seed is None else seed
        wanted = [("ARM", size, b, seed) for b in sorted(self.settings.budgets)] + [("MDM", size, top, seed)]
        for key in wanted:
            if key not in self.models:
                self.models[key] = self.train_arm(*key[:3], callback=callback, seed=seed)[0]
        return {f"{arm} {size} C={budget:.1e}": self.models[key] for key in wanted for arm, size, budget, _ in [key]}

    def pretrained(self, arm: str, size: str, seed: int) -> nn.Module:
        """A copy of the arm pretrained on the corpus at the largest budget (the scaling part's, or trained now)."""
        key = (arm, size, max(self.settings.budgets), seed)
        if key not in self.models:
            self.models[key] = self.train_arm(*key[:3], seed=seed)[0]
        return copy.deepcopy(self.models[key])

    # -- 2. sampling quality and speed ---------------------------------------------------------
    def prompts(self) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        blocks = data.blocks(self.val_tokens, s.block_len)[: s.n_prompts].to(self.device)
        return blocks[:, : s.prompt_len], blocks[:, s.prompt_len : s.prompt_len + s.gen_len]

    def _generate(
        self,
        name: str,
        model: nn.Module,
        prompt: torch.Tensor,
        config: SamplerConfig | None,
        w: float = 0.0,
        seed: int = 0,
        trace: bool = False,
    ):
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with _autocast(self.device):
            if name.startswith("ARM"):
                return autoregressive_generate(
                    model, prompt, self.settings.gen_len, config.temperature, generator, trace
                )
            denoise = mdm.denoiser(model) if w == 0 else guided(mdm.denoiser(model), prompt.shape[1], self.mask_id, w)
            return diffusion_generate(denoise, prompt, self.settings.gen_len, self.mask_id, config, generator, trace)

    @torch.no_grad()
    def _judge_ppl(self, judge: nn.Module, tokens: torch.Tensor) -> float:
        """Perplexity of the continuation tokens[:, prompt_len:] given the prompt under the judge model."""
        targets = tokens[:, 1:].clone()
        targets[:, : self.settings.prompt_len - 1] = -100
        with _autocast(self.device):
            nll = float(sequence_nll(judge, tokens[:, :-1], targets))
        return math.exp(nll / int((targets != -100).sum()))

    def sampling(self, callback: Callback | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Quality against steps (judge perplexity, unigram entropy) and wall time per sample, per training
        seed: every sampler at the same temperature, so diversity is compared like for like."""
        s = self.settings
        models = {seed: self.sampling_models(callback, seed) for seed in s.seeds}
        judge, _ = load_model(s.judge, device=self.device)
        prompt, reference = self.prompts()
        quality = [
            {
                "model": "held-out text",
                "sampler": "data",
                "steps": 0,
                "judge_ppl": self._judge_ppl(judge, torch.cat([prompt, reference], 1)),
                "entropy": unigram_entropy(reference),
            }
        ]
        configs = {
            name: [SamplerConfig(steps=s.gen_len, temperature=s.temperature)]
            if name.startswith("ARM")
            else [SamplerConfig(steps=k, algorithm=a, temperature=s.temperature) for a in s.samplers for k in s.steps]
            for name in models[s.seeds[0]]
        }
        for seed, seed_models in models.items():
            for name, model in seed_models.items():
                for config in configs[name]:
                    out = self._generate(name, model, prompt, config)
                    quality.append(
                        {
                            "model": name,
                            "sampler": "left-to-right" if name.startswith("ARM") else config.algorithm,
                            "steps": config.steps,
                            "seed": seed,
                            "judge_ppl": self._judge_ppl(judge, out.tokens),
                            "entropy": unigram_entropy(out.tokens[:, s.prompt_len :]),
                            "forwards_per_sample": out.network_rows / len(prompt),
                            "epochs": self.epochs[name],
                        }
                    )
        del judge
        contenders = {}
        for batch in s.timing_batches:
            for seed, seed_models in models.items():
                for name, model in seed_models.items():
                    for config in configs[name]:
                        sampler = "left-to-right" if name.startswith("ARM") else config.algorithm
                        contenders[(name, sampler, config.steps, batch, seed)] = (
                            lambda m=model, n=name, c=config, b=batch: self._generate(n, m, prompt[:b], c)
                        )
        timings = interleaved(contenders, self.device, rounds=s.timing_rounds, warmup=1)
        speed = pd.DataFrame(
            [
                {
                    "model": n,
                    "sampler": a,
                    "steps": k,
                    "batch": b,
                    "seed": seed,
                    "s_per_sample": t.median_s / b,
                    "spread": t.spread,
                }
                for (n, a, k, b, seed), t in timings.items()
            ]
        )
        with start_run(KIND, "sampling", params=s.as_dict(), sweep=self.sweep) as run:
            quality_table = pd.DataFrame(quality)
            run.log_artifact("quality.json", quality_table.to_dict("records"))
            run.log_artifact("speed.json", speed.to_dict("records"))
            mdm_row = self.scaling_row("MDM")
            if mdm_row is not None:  # without the scaling part there is no held-out loss to show (NaN fails a run)
                run.update_summary(val_nll=mdm_row["val_nll"])
        return quality_table, speed

    def scaling_row(self, arm: str) -> dict | None:
        if self.scaling_table is None:
            return None
        table = self.scaling_table
        rows = table[(table["arm"] == arm) & (table["size"] == self.settings.sizes[-1])]
        return rows.sort_values("budget").iloc[-1].to_dict()

    def traces(self, steps: int) -> dict[str, Trace]:
        """One prompt written by the largest MDM (low-confidence, `steps` steps) and the largest ARM, step by step,
        both at `trace_budget` FLOPs (trained now where that is not a budget of the grid)."""
        s = self.settings
        size, budget, seed = s.sizes[-1], s.trace_budget or max(s.budgets), s.seeds[0]
        for arm in ("MDM", "ARM"):
            if (arm, size, budget, seed) not in self.models:
                self.models[(arm, size, budget, seed)] = self.train_arm(arm, size, budget, seed=seed)[0]
        prompt = self.prompts()[0][:1]
        configs = {"MDM": SamplerConfig(steps=steps, temperature=s.temperature),
                   "ARM": SamplerConfig(steps=s.gen_len, temperature=s.temperature)}  # fmt: skip
        traces = {}
        for arm, how in (("MDM", f"{steps} steps"), ("ARM", "left to right")):
            name = f"{arm} {size} C={budget:.1e}"
            model = self.models[(arm, size, budget, seed)]
            traces[f"{name}, {how}"] = self._generate(name, model, prompt, configs[arm], trace=True)
        return traces

    # -- 3. guidance ---------------------------------------------------------------------------
    def guidance(self) -> pd.DataFrame:
        """Per seed and w, the largest MDM's zero-shot accuracy on held-out text (4-way continuation choice
        and cloze, chain-rule likelihood; even items tune w, odd items judge it), the ARM's accuracy on
        the same items, the conditional likelihood of true continuations (ELBO and chain rule, nats/token)
        and the quality of generated samples."""
        s = self.settings
        blocks = data.blocks(self.val_tokens, s.block_len)[: s.n_prompts].to(self.device)
        n_target = blocks.shape[1] - s.cond_len
        targets = blocks[:, 1:].clone()
        targets[:, : s.cond_len - 1] = -100
        tasks = zeroshot.build_tasks(
            self.val_tokens, self.tokenizer, n_items=s.choice_items, context=s.cond_len, seed=s.seed,
            continuation=s.choice_len,
        )  # fmt: skip
        tune, judged = halves(tasks)
        judge, _ = load_model(s.judge, device=self.device)
        prompt, _ = self.prompts()
        rows = []
        for seed in s.seeds:
            models = self.sampling_models(seed=seed)
            mdm_name = next(n for n in models if n.startswith("MDM"))
            model, arm = models[mdm_name], models[[n for n in models if n.startswith("ARM")][-1]]
            with torch.no_grad(), _autocast(self.device):
                arm_nll = float(sequence_nll(arm, blocks[:, :-1], targets)) / (len(blocks) * n_target)
            arm_loglik = zeroshot.causal_loglik(arm, self.device)
            arm_acc = {name: zeroshot.accuracy(part, arm_loglik) for name, part in (("tune", tune), ("test", judged))}
            for w in sorted(set(s.guidance_ws) | set(s.guidance_gen_ws)):
                row = {"seed": seed, "w": w, "arm_nll": arm_nll, "mdm_epochs": self.epochs[mdm_name]}
                row |= {
                    "arm_choice_acc_tune": arm_acc["tune"]["choice_acc"],
                    "arm_choice_acc_test": arm_acc["test"]["choice_acc"],
                    "arm_cloze_acc_test": arm_acc["test"]["cloze_acc"],
                }
                if w in s.guidance_ws:
                    loglik = zero_shot_loglik(model, w=w, length=s.block_len)
                    for name, part in (("tune", tune), ("test", judged)):
                        acc = zeroshot.accuracy(part, loglik)
                        row[f"choice_acc_{name}"], row[f"cloze_acc_{name}"] = acc["choice_acc"], acc["cloze_acc"]
                    denoise = guided(mdm.denoiser(model), s.cond_len, self.mask_id, w)
                    row["elbo"] = (
                        float(mdm.elbo(denoise, blocks, s.cond_len, self.mask_id, s.elbo_samples, s.seed).mean())
                        / n_target
                    )
                    row["chain_rule_nll"] = (
                        float(mdm.chain_rule_nll(denoise, blocks, s.cond_len, self.mask_id).mean()) / n_target
                    )
                if w in s.guidance_gen_ws:
                    config = SamplerConfig(steps=s.guidance_steps, temperature=s.temperature)
                    out = self._generate(mdm_name, model, prompt, config, w=w)
                    row["judge_ppl"] = self._judge_ppl(judge, out.tokens)
                    row["entropy"] = unigram_entropy(out.tokens[:, s.prompt_len :])
                rows.append(row)
        del judge
        table = pd.DataFrame(rows)
        table.attrs["chance"] = {"choice": tasks.choice_chance, "cloze": tasks.cloze_chance}
        with start_run(KIND, "guidance", params=s.as_dict(), sweep=self.sweep) as run:
            run.log_artifact("guidance.json", table.to_dict("records"))
            best = table["chain_rule_nll"].min() if "chain_rule_nll" in table else math.nan
            run.update_summary(val_nll=float(best))
        return table

    # -- 4. reversal curse ---------------------------------------------------------------------
    def reversal(self) -> pd.DataFrame:
        """Both arms, each seed, pretrained on the corpus (`pretrained`), then fine-tuned on the facts for the
        same steps on the same batches; accuracy per direction (MDM: also guided, SMDM's w)."""
        s = self.settings
        facts = reversal.build(self.tokenizer, s.n_people, s.paraphrases, seed=0)
        rows = []
        for seed in s.reversal_seeds:
            for arm in ("ARM", "MDM"):
                model = self.pretrained(arm, s.reversal_size, seed)
                pretrain = self.epochs[f"{arm} {s.reversal_size} C={max(s.budgets):.1e}"]
                loss_fn = causal_lm_loss if arm == "ARM" else mdm.diffusion_loss
                config = TrainConfig(
                    steps=s.reversal_steps,
                    lr=s.reversal_lr,
                    warmup_steps=max(1, s.reversal_steps // 20),
                    weight_decay=s.weight_decay,
                    log_every=max(1, s.reversal_steps // 10),
                    checkpoint=False,
                    compile=s.compile,
                )
                tokens = s.reversal_steps * s.reversal_batch * facts.row_len
                params = s.as_dict() | {
                    "arm": arm,
                    "seed": seed,
                    "n_params": non_embedding_parameters(model),
                    "total_params": count_parameters(model),
                    "pretrain_epochs": pretrain,
                }
                with start_run(REVERSAL_KIND, f"reversal {arm} seed {seed}", params=params, sweep=self.sweep) as run:
                    batches = reversal.row_batches(facts.rows, s.reversal_batch, self.device, seed)
                    metrics = train(model, batches, config, loss_fn=loss_fn, run=run, progress=self.progress)
                    infill = math.nan
                    if arm == "MDM":
                        infill = reversal.infill_accuracy(
                            self._filler(model), facts, self.tokenizer, self.mask_id, self.device
                        )
                    for w in (0.0,) if arm == "ARM" else (0.0, s.reversal_cfg):
                        acc = reversal.accuracy(self._answerer(arm, model, w), facts, self.tokenizer, self.device)
                        row = {
                            "arm": arm,
                            "seed": seed,
                            "w": w,
                            "seen_acc": acc["seen"],
                            "reverse_acc": acc["reverse"],
                            "both_acc": acc["both"],
                            "seen_exact": acc["seen_exact"],
                            "reverse_exact": acc["reverse_exact"],
                            "reverse_infill_acc": infill,
                            "epochs": tokens / facts.rows.numel(),
                            "pretrain_epochs": pretrain,
                            "tokens_per_s": metrics.get("tokens_per_s", math.nan),
                            "run_id": run.id,
                        }
                        rows.append(row)
                        run.log({f"seen_acc_w{w}": acc["seen"], f"reverse_acc_w{w}": acc["reverse"]}, s.reversal_steps)
                    run.update_summary(
                        reverse_acc=max(r["reverse_acc"] for r in rows if r["run_id"] == run.id),
                        seen_acc=max(r["seen_acc"] for r in rows if r["run_id"] == run.id),
                        reverse_infill_acc=infill,
                        epochs=row["epochs"],
                    )
                    if arm == "ARM" and seed == s.reversal_seeds[0]:
                        run.mark_reference()
        return pd.DataFrame(rows)

    def _filler(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """The MDM filling masks in place: low-confidence sampler, one token per step, τ = 0."""

        def fill(x: torch.Tensor) -> torch.Tensor:
            steps = int((x == self.mask_id).sum(1).max())
            with _autocast(self.device):
                return unmask(mdm.denoiser(model), x, self.mask_id, SamplerConfig(steps=steps, temperature=0.0)).tokens

        return fill

    def _answerer(self, arm: str, model: nn.Module, w: float) -> reversal.Generate:
        """Greedy answers: the ARM left to right; the MDM with the low-confidence sampler, one token per step, τ = 0."""

        def generate(prompt: torch.Tensor, n_new: int) -> torch.Tensor:
            with _autocast(self.device):
                if arm == "ARM":
                    return autoregressive_generate(model, prompt, n_new, temperature=0.0).tokens
                denoise = (
                    mdm.denoiser(model) if w == 0 else guided(mdm.denoiser(model), prompt.shape[1], self.mask_id, w)
                )
                return diffusion_generate(
                    denoise, prompt, n_new, self.mask_id, SamplerConfig(steps=n_new, temperature=0.0)
                ).tokens

        return generate
