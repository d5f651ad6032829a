"""The EchoAtt experiment: attend, copy, adjust, and whether it pays, arm by arm.

Per arm (see `arms`): zero-shot held-out perplexity right after copying, perplexity after
distillation, parameter count, prefill and decode tokens/s, training step time, and the
attention kernel of each measured model (see `speed`: all models timed in the same
interleaved rounds, median and spread). Every trained arm sees the same fixed tokens
(steps × batch × length). Every arm is a run of kind "echoatt" in the
run store (one sweep per experiment; the teacher's run is the reference), with its training
curves; a final "table" run holds the whole table and the similarity matrix. This module only
orchestrates: the table it returns is read by `report`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import cards, runs
from ..attention.analysis import analyze
from ..attention.sharing import followers
from ..data import batches, blocks, check_epochs, token_splits
from ..deadline import ArmClock
from ..distill import DistillationLoss, DistillConfig
from ..models import count_parameters, load_model, resolve_device, tiny_llama
from ..runs import Run, RunKind, start_run
from ..train import TrainConfig, train
from .arms import Arm, plan_arms
from .handoff import LabResult, lab_result
from .profile import EchoAttProfile
from .report import conclusion, paper_cut, results_markdown
from .speed import free, held_out_ppl, measure_speeds, with_attention
from .student import attention_kernel, build_student

KIND = RunKind(
    "echoatt", headline="ppl", goal="min",
    description="EchoAtt students (shared attention, distilled) against the teacher: held-out perplexity",
)  # fmt: skip

Callback = Callable[[str, int, dict[str, float]], None]


@dataclass
class ExperimentResult:
    profile: EchoAttProfile  # as trained: every arm `steps` × `batch_size` × `block_len` tokens
    table: pd.DataFrame  # one row per arm (the teacher twice: sdpa and eager)
    similarity: np.ndarray  # [L, L] under profile.metric
    sweep: str
    run_ids: dict[str, int]
    device: str
    seeds: pd.DataFrame | None = None  # ppl per seed of the continued teacher and the student at the paper's cut
    not_trained: list[str] = field(default_factory=list)  # arms a time limit left out (`workbench.deadline`)


def teacher_similarity(
    model, tokenizer, tokens: torch.Tensor, profile: EchoAttProfile, progress: bool = True
) -> np.ndarray:
    """The teacher's [L, L] attention similarity (`profile.metric`, head-averaged per-head values,
    sink column dropped unless `profile.drop_sink` is False), on blocks of training text."""
    texts = blocks(tokens, profile.similarity_len, profile.similarity_texts)
    result = analyze(
        model,
        tokenizer,
        texts,
        metrics=(profile.metric,),
        drop_sink=profile.drop_sink,
        seq_len=profile.similarity_len,
        progress=progress,
    )
    return result.similarity(profile.metric, sink="dropped" if profile.drop_sink else "kept")


class EchoAttExperiment:
    """One experiment, step by step as the paper names them (each step usable from a notebook cell):

        experiment = EchoAttExperiment("full")
        similarity = experiment.attend()     # the teacher's L×L attention similarity
        arms = experiment.choose_arms()      # which layers each arm shares
        result = experiment.adjust(callback) # zero-shot ppl, speed, distillation, final ppl

    Holds the teacher (a float32 master copy, plus a bf16 copy on a GPU for KD and speed) and the
    token splits of `profile.corpus` (the last 5% held out, never trained on).
    """

    def __init__(self, profile: str | EchoAttProfile = "smoke", progress: bool = True, **overrides):
        self.profile = profile = EchoAttProfile.resolve(profile, **overrides)
        self.progress = progress
        self.device = resolve_device("auto")
        if profile.teacher == "tiny":
            model, tokenizer = tiny_llama(
                n_layers=profile.tiny_layers, d_model=64, n_heads=4, n_kv_heads=2,
                max_len=max(profile.eval_context, profile.prefill_len) + 128, seed=profile.seed,
            )  # fmt: skip
            model = model.to(self.device).eval()
        else:
            model, tokenizer = load_model(profile.teacher, dtype="float32", device=self.device, attn="sdpa")
        self.teacher, self.tokenizer = model.requires_grad_(False), tokenizer
        # The KD teacher and every inference-speed measurement use bf16 on a GPU, as deployed.
        self.inference_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.teacher_kd = copy.deepcopy(model).to(self.inference_dtype)
        splits = token_splits(profile.corpus, tokenizer)
        check_epochs(profile, profile.train_tokens_per_arm, splits.n_train)
        self.train_tokens, self.val_tokens = splits.train, splits.val
        self.device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.n_layers = len(model.model.layers)
        self.similarity: np.ndarray | None = None
        self.lab: LabResult | None = None  # the attention-lab run the similarity came from, if any
        self.arms: list[Arm] | None = None

    @contextmanager
    def _threads(self):
        """`profile.cpu_threads` torch threads inside, the previous number restored after."""
        before = torch.get_num_threads()
        if self.device.type == "cpu" and self.profile.cpu_threads:
            torch.set_num_threads(self.profile.cpu_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def attend(self) -> np.ndarray:
        """Attend: the teacher's [L, L] similarity, higher = more alike: from the attention-lab run
        `profile.attention_run` (its metric and sink replace the profile's), or measured here."""
        if self.profile.attention_run is not None:
            heads = self.teacher.config.num_attention_heads
            self.lab = lab_result(runs.store(), self.profile.attention_run, self.n_layers, heads)
            self.profile = replace(self.profile, metric=self.lab.metric, drop_sink=self.lab.sink == "dropped")
            self.similarity = np.asarray(self.lab.similarity)
            return self.similarity
        with self._threads():
            similarity = teacher_similarity(
                self.teacher, self.tokenizer, self.train_tokens, self.profile, self.progress
            )
        self.similarity = np.asarray(similarity)
        return self.similarity

    def choose_arms(self) -> list[Arm]:
        """Copy: the layers each arm shares (similarity-chosen, random draws, last inner)."""
        if self.similarity is None:
            self.attend()
        self.arms = plan_arms(self.profile, self.n_layers, self.similarity)
        return self.arms

    def adjust(self, callback: Callback | None = None) -> ExperimentResult:
        """Adjust, and measure: every arm's speed (all arms in the same interleaved rounds), then its
        zero-shot and distilled perplexity and parameters, each arm trained on the same fixed tokens.

        `callback(arm, step, metrics)` receives the held-out perplexity during training (live curves).

        Under a time limit (`workbench.deadline`) an arm that would end past it is not started (the teacher,
        only evaluated, always is): the similarity arms and the continued teacher, which the verdicts need,
        go first as planned; a random or last arm, which no verdict pairs, starts only if the paired seeds
        (`seed_arms`: the continued teacher and the similarity student once more per extra seed) still fit
        after it. The order of the arms is the same with or without a limit.
        """
        arms = self.arms or self.choose_arms()
        profile = self.profile
        clock = ArmClock()
        paired = ("continued", "similarity") * (profile.quality_seeds - 1)  # kept time for, before unpaired arms
        with self._threads():
            speeds = self.measure_speeds(arms)
            sweep = f"echoatt-{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            teacher_params = count_parameters(self.teacher)
            rows, run_ids = [], {}
            for arm in tqdm(arms, desc="EchoAtt arms", disable=not self.progress):
                later = paired if arm.kind in ("random", "last") else ()
                if arm.kind != "teacher" and not clock.admit(arm.run_name, arm.kind, *later):
                    continue
                params = profile.as_dict() | {"arm": arm.kind, "n_shared": arm.n_shared, "groups": arm.groups,
                                              "draw": arm.draw, "labels": [n for n, _ in arm.labels]}  # fmt: skip
                with start_run(KIND, arm.run_name, params, sweep=sweep) as run:
                    for name, _ in arm.labels:
                        run_ids[name] = run.id
                    if arm.kind == "teacher":
                        run.mark_reference()
                    with clock.timing(arm.kind):
                        new_rows = self.run_arm(arm, speeds, run, callback)
                    for row in new_rows:
                        row["params_change_pct"] = 100 * (row["params"] / teacher_params - 1)
                    run.update_summary(ppl=new_rows[0]["ppl"], rows=new_rows)
                rows += new_rows
                free(self.device)
            seeds = self.seed_arms(arms, pd.DataFrame(rows), speeds, sweep, clock)
        table = with_ratios(pd.DataFrame(rows))
        table.attrs["not_trained"] = not_trained = clock.announce()
        with start_run(KIND, "table", profile.as_dict(), sweep=sweep) as run:
            run.log_artifact("table.json", table.to_dict(orient="records"))
            run.log_artifact("similarity.npy", self.similarity)
            source = f"attention run {self.lab.run_id}" if self.lab else "measured here"
            run.update_summary(similarity_source=source, metric=profile.metric, drop_sink=profile.drop_sink)
            run.log_artifact("seeds.json", seeds.to_dict(orient="records"))
            run.log_artifact("results.md", results_markdown(table, profile, self.device_name, seeds).encode())
            run.update_summary(device=self.device_name, conclusion=conclusion(table, seeds, profile=profile))
            run_ids["table"] = run.id
        return ExperimentResult(profile, table, self.similarity, sweep, run_ids, self.device_name, seeds, not_trained)

    def seed_arms(
        self, arms: list[Arm], table: pd.DataFrame, speeds: dict[str, dict], sweep: str, clock: ArmClock | None = None
    ) -> pd.DataFrame:
        """Held-out perplexity per seed (batch order) of the continued teacher and of the similarity student at
        the paper's cut, for the paired "no loss in quality" verdict: seed `profile.seed` is the main arms',
        `quality_seeds - 1` more are trained here on the same number of tokens. Under a time limit (`clock`) a
        seed starts only when both of its arms fit (half a pair judges nothing), and none without both main arms."""
        p, clock = self.profile, clock or ArmClock()
        kinds = set(table["kind"]) if not table.empty else set()
        n = paper_cut(table) if "similarity" in kinds else None
        chosen = [a for a in arms if a.kind == "continued" or (a.kind == "similarity" and a.n_shared == n)]
        if "continued" not in kinds or n is None:  # the main arms of the pair were not trained: no seed is paired
            extra = range(p.seed + 1, p.seed + p.quality_seeds)
            clock.skipped += [f"continued teacher and similarity student seed={seed}" for seed in extra]
            return pd.DataFrame([])

        def row(arm: Arm, seed: int, ppl: float) -> dict:
            return {"arm": arm.name, "kind": arm.kind, "n_shared": arm.n_shared, "seed": seed, "ppl": ppl,
                    "epochs": p.train_tokens_per_arm / len(self.train_tokens)}  # fmt: skip

        rows = [row(a, p.seed, float(table.loc[table["arm"] == a.name, "ppl"].iloc[0])) for a in chosen]
        for seed in range(p.seed + 1, p.seed + p.quality_seeds):
            if not clock.fits(*(arm.kind for arm in chosen)):
                clock.skipped += [f"{arm.run_name} seed={seed}" for arm in chosen]
                continue
            for arm in chosen:
                params = p.as_dict() | {"arm": arm.kind, "n_shared": arm.n_shared, "groups": arm.groups,
                                        "train_seed": seed}  # fmt: skip
                with start_run(KIND, f"{arm.run_name} seed={seed}", params, sweep=sweep) as run, clock.timing(arm.kind):
                    ppl = self.run_arm(arm, speeds, run, seed=seed)[0]["ppl"]
                    run.update_summary(ppl=ppl)
                rows.append(row(arm, seed, ppl))
                free(self.device)
        return pd.DataFrame(rows)

    def measure_speeds(self, arms: list[Arm]) -> dict[str, dict]:
        """Prefill, KD training step and decode of the teacher (sdpa and eager) and of every student
        (fused; the similarity arms also all-eager), all in the same interleaved rounds."""
        models = {f"teacher ({attn})": with_attention(self.teacher, attn) for attn in ("sdpa", "eager")}
        for arm in arms:
            if arm.kind in ("teacher", "continued"):  # the continued teacher has the teacher's architecture
                continue
            models[arm.name] = build_student(self.teacher, arm.groups, self.profile.max_block)
            if arm.kind == "similarity":
                models[f"{arm.name} (eager)"] = with_attention(models[arm.name], "eager")
        models = {name: model.to(self.inference_dtype).eval() for name, model in models.items()}
        speeds = measure_speeds(models, self.teacher_kd, self.profile.speed_shapes, progress=self.progress)
        del models
        free(self.device)
        return speeds

    def held_out_ppl(self, model, windows: int | None) -> float:
        p = self.profile
        return held_out_ppl(model, self.val_tokens, p.eval_context, p.eval_batch, windows)

    def run_arm(
        self, arm: Arm, speeds: dict[str, dict], run: Run, callback: Callback | None = None, seed: int | None = None
    ) -> list[dict]:
        """One arm's table rows (one per label it stands for): measured before training (zero-shot
        ppl; speed from `speeds`), then trained `profile.steps` steps on batches drawn with `seed`
        (default `profile.seed`)."""
        profile = self.profile
        groups = " ".join(map(str, followers(arm.groups)))
        base = {"arm": arm.name, "kind": arm.kind, "n_shared": arm.n_shared, "followers": groups,
                "trained_as": arm.run_name}  # fmt: skip
        if arm.kind == "teacher":
            ppl = self.held_out_ppl(self.teacher, profile.eval_windows)
            params = count_parameters(self.teacher)
            self.card(run, arm, self.teacher)
            return [
                {**base, "arm": f"teacher ({attn})", "params": params, "zero_shot_ppl": ppl, "ppl": ppl,
                 **speeds[f"teacher ({attn})"]}
                for attn in ("sdpa", "eager")
            ]  # fmt: skip

        if arm.kind == "continued":
            model = copy.deepcopy(self.teacher)
        else:
            model = build_student(self.teacher, arm.groups, profile.max_block)
        model.requires_grad_(True)
        base["params"] = count_parameters(model)
        zero_shot = self.held_out_ppl(model, profile.eval_windows)
        run.update_summary(zero_shot_ppl=zero_shot)
        if arm.kind == "continued":  # the teacher's architecture, hence its speed (measured there)
            measured = [(arm.name, arm.kind, {"kernel": attention_kernel(model)})]
        else:  # every label shares the speed measured under the arm's own name
            measured = [(name, kind, speeds[arm.name]) for name, kind in arm.labels]
        if arm.kind == "similarity":  # the all-eager student too: eager teacher vs eager student
            measured.append((f"{arm.name} (eager)", arm.kind, speeds[f"{arm.name} (eager)"]))

        steps, log_every = profile.steps, min(profile.log_every, profile.steps)
        if arm.kind == "continued":
            plain = DistillConfig(alpha=1.0, beta=0.0, chunk_tokens=profile.distill.chunk_tokens)
            loss = DistillationLoss(None, plain, run=run, log_every=log_every)
        else:
            distill = replace(profile.distill, stage1_steps=int(profile.stage1_fraction * steps))
            loss = DistillationLoss(self.teacher_kd, distill, run=run, log_every=log_every)

        curve: dict[int, float] = {}  # step → perplexity on the curve windows: shows a baseline overfitting

        def evaluate(model, loss: DistillationLoss = loss) -> dict[str, float]:
            metrics = {"val_ppl": self.held_out_ppl(model, profile.curve_windows)}
            curve[loss.step] = metrics["val_ppl"]
            if callback is not None:
                callback(arm.run_name, loss.step, metrics)
            return metrics

        config = TrainConfig(
            steps=steps, lr=profile.lr, warmup_steps=profile.warmup_steps, log_every=log_every,
            eval_every=profile.eval_every, checkpoint=False,
        )  # fmt: skip
        seed = profile.seed if seed is None else seed
        stream = batches(self.train_tokens, profile.batch_size, profile.block_len + 1, self.device, seed=seed)
        if callback is not None:
            callback(arm.run_name, 0, {"val_ppl": self.held_out_ppl(model, profile.curve_windows)})
        start = time.perf_counter()
        metrics = train(model, stream, config, loss_fn=loss, run=run, evaluate=evaluate, progress=self.progress)
        trained = {
            "zero_shot_ppl": zero_shot,
            "ppl": self.held_out_ppl(model, profile.eval_windows),
            "train_tokens": profile.train_tokens_per_arm,
            "epochs": profile.train_tokens_per_arm / len(self.train_tokens),
            "curve_best_step": min(curve, key=curve.get),
            "curve_best_ppl": min(curve.values()),
            "curve_last_ppl": curve[max(curve)],
            "train_run_tok_s": metrics.get("tokens_per_s", float("nan")),
            "train_wall_s": time.perf_counter() - start,
        }
        self.card(run, arm, model)
        del model, loss, evaluate
        return [{**base, "arm": name, "kind": kind, **speed, **trained} for name, kind, speed in measured]

    def card(self, run: Run, arm: Arm, model) -> None:
        """The arm's model card (`workbench.cards`), measured as deployed (bf16 on a GPU). A student's training
        FLOPs include the teacher's forward passes that distillation spent."""
        p = self.profile
        tokens = None if arm.kind == "teacher" else p.train_tokens_per_arm
        flops = None
        if tokens and arm.kind != "continued":
            teacher = cards.forward_flops(self.teacher, tokens, p.block_len)
            flops = cards.train_flops(model, tokens, p.block_len) + teacher
        cards.write_card(run, model, idea="echoatt", arm=arm.run_name, tokenizer=self.tokenizer, profile=p.name,
                         training_tokens=tokens, training_context=p.block_len, training_flops=flops,
                         corpus=p.corpus, extra={"groups": arm.groups})  # fmt: skip


def with_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Speeds relative to the teacher with the same unshared-layer kernel (×1.15 = 15% faster); the
    KD training step of a student against the same KD step of the teacher."""
    table = table.copy()
    for attn in ("sdpa", "eager"):
        teacher = table[table["arm"] == f"teacher ({attn})"].iloc[0]
        same = table["kernel"].str.startswith(attn)
        table.loc[same, "prefill_vs_teacher"] = table.loc[same, "prefill_tok_s"] / teacher["prefill_tok_s"]
        table.loc[same, "decode_vs_teacher"] = table.loc[same, "decode_tok_s"] / teacher["decode_tok_s"]
        table.loc[same, "train_vs_teacher"] = table.loc[same, "train_tok_s"] / teacher["train_tok_s"]
    return table


def run_experiment(
    profile: str | EchoAttProfile = "smoke", callback: Callback | None = None, progress: bool = True, **overrides
) -> ExperimentResult:
    """Attend, choose the arms, adjust: the whole experiment in one call (see `EchoAttExperiment`)."""
    experiment = EchoAttExperiment(profile, progress=progress, **overrides)
    experiment.attend()
    experiment.choose_arms()
    return experiment.adjust(callback)
