"""The EchoAtt experiment: attend, copy, adjust, and whether it pays, arm by arm.

Arms, each with the same number n of shared layers (followers, which lose W_Q and W_K) and the
same block structure (groups of at most `max_block` consecutive layers, the first computing):
- "similarity": followers chosen from the teacher's attention-similarity matrix,
- "random": followers drawn at random under the same structure (several draws),
- "last": the last inner layers, packed into groups of `max_block`,
and two baselines: the teacher as is, and the teacher continued-trained with cross-entropy on
the same tokens for the same steps (the fair baseline: any student gain must beat what the
extra training alone buys).

Per arm: zero-shot held-out perplexity right after copying, perplexity after distillation,
parameter count, prefill and decode tokens/s, training step time, and the attention kernel of
each measured model. Every arm is a run in the run store (one sweep per experiment), with its
training curves; a final "table" run holds the whole table and the similarity matrix.
"""

from __future__ import annotations

import copy
import gc
import random
import statistics
import warnings
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import batches, blocks, load_corpus, tokenize, train_val_split
from ..evaluate import perplexity
from ..errors import WorkbenchError
from ..generate import SampleConfig, output_cache, sample
from ..models import count_parameters, load_model, resolve_device, tiny_llama
from ..runs import Run, start_run
from ..train import TrainConfig, train
from .analysis import analyze
from ..distill import DistillConfig, DistillationLoss
from .echoatt import attention_kernel, build_student, followers
from .sharing import choose_groups

KIND = "echoatt"


@dataclass
class EchoAttProfile:
    """Everything one experiment does, with its compute budget made explicit."""

    name: str
    teacher: str = "smollm2-135m"  # a model name for `load_model`, or "tiny" (random tiny LLaMA)
    tiny_layers: int = 8
    corpus: str = "python-docs"
    budgets: tuple[int, ...] = (6, 12)  # numbers of shared layers (followers)
    random_draws: int = 3
    max_block: int = 2  # group length: 2 = each follower reuses its immediate predecessor
    eligible: tuple[int, int] | None = None  # first and last layer allowed in a group; default (2, L-2)
    metric: str = "cosine"  # similarity used to choose layers: "cosine", "jsd" (as 1 − JSD) or "cka", mean of per-head values
    drop_sink: bool = True  # remove the attention-sink column before comparing (papers.md §1.4)
    similarity_texts: int = 16
    similarity_len: int = 512
    # training (same for every arm, including the continued-trained teacher)
    steps: int = 200
    batch_size: int = 16
    block_len: int = 512
    lr: float = 2e-4
    warmup_steps: int = 10
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(temperature=1.0, alpha=0.5, beta=0.5, gamma=1.0))
    stage1_fraction: float = 0.5  # hidden-state matching + KL for this fraction of steps, then CE + KL
    # evaluation
    eval_context: int = 1024
    eval_batch: int = 16
    eval_windows: int | None = None  # None: the whole held-out split
    curve_windows: int = 8  # windows for the perplexity curve during training
    eval_every: int = 25
    # speed
    prefill_batch: int = 8
    prefill_len: int = 1024
    decode_batch: int = 8
    decode_tokens: int = 32
    speed_repeats: int = 3
    train_speed_steps: int = 5
    seed: int = 0
    cpu_threads: int | None = None  # torch threads on a CPU while the experiment runs (None: unchanged)
    train_budget_s: float | None = None  # lower `steps` (for all arms alike) if training would take longer


PROFILES = {
    # CPU, seconds: a tiny random teacher, a few steps; exercises every code path.
    "smoke": EchoAttProfile(
        name="smoke", teacher="tiny", budgets=(2,), random_draws=1, similarity_texts=2, similarity_len=32,
        steps=4, batch_size=2, block_len=32, lr=1e-3, warmup_steps=1, eval_context=64, eval_batch=4, eval_windows=4,
        curve_windows=2, eval_every=2, prefill_batch=1, prefill_len=64, decode_batch=1, decode_tokens=4, speed_repeats=1,
        train_speed_steps=1, cpu_threads=1,  # tiny ops gain nothing from threads, and lose a lot on a busy machine
    ),
    # One H200, ~5 minutes (estimate): SmolLM2-135M teacher, 11 trained arms × 200 steps × 16×512 tokens;
    # if one distillation step is slower than planned, all arms train fewer steps to stay within 4 minutes.
    "full": EchoAttProfile(name="full", train_budget_s=240),
}


def get_profile(profile: str | EchoAttProfile, **overrides) -> EchoAttProfile:
    """A profile by name (or as given) with `overrides` applied; None means "the profile's value"."""
    if not isinstance(profile, EchoAttProfile):
        if profile not in PROFILES:
            raise WorkbenchError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
        profile = PROFILES[profile]
    unknown = set(overrides) - set(asdict(profile))
    if unknown:
        raise WorkbenchError(f"unknown EchoAtt setting(s) {', '.join(sorted(unknown))}: see EchoAttProfile")
    return replace(profile, **{k: v for k, v in overrides.items() if v is not None})


# -- choosing layers --------------------------------------------------------------------------
def eligible_layers(n_layers: int, eligible: tuple[int, int] | None) -> list[int]:
    """Layers allowed in a group: by default all but the first two and the last (papers.md §1.4)."""
    first, last = eligible or (2, n_layers - 2)
    if not 0 <= first < last < n_layers:
        raise WorkbenchError(f"eligible layers ({first}, {last}) must satisfy 0 ≤ first < last < {n_layers}")
    return list(range(first, last + 1))


def groups_from_followers(chosen: Sequence[int], eligible: Sequence[int], max_block: int) -> list[list[int]] | None:
    """Groups [h, f1, ..] for a set of followers: each run of consecutive followers reuses the layer
    just before it. None if that layer is not eligible or a run is longer than max_block − 1."""
    chosen, allowed, groups = sorted(set(chosen)), set(eligible), []
    for layer in chosen:
        if groups and layer == groups[-1][-1] + 1:
            groups[-1].append(layer)
        else:
            groups.append([layer - 1, layer])
    if any(g[0] not in allowed or not set(g) <= allowed or len(g) > max_block for g in groups):
        return None
    return groups


def random_groups(n_layers: int, n_shared: int, max_block: int, eligible: tuple[int, int] | None, seed: int) -> list[list[int]]:
    """Random followers under the same structure as the chosen ones.

    Random sequential insertion with restarts: candidates in random order, each kept if the
    follower set stays valid, until `n_shared` are placed.
    """
    layers, rng = eligible_layers(n_layers, eligible), random.Random(seed)
    for _ in range(10_000):
        chosen: list[int] = []
        for layer in rng.sample(layers[1:], len(layers) - 1):
            if len(chosen) == n_shared:
                break
            if groups_from_followers([*chosen, layer], layers, max_block) is not None:
                chosen.append(layer)
        if len(chosen) == n_shared:
            return groups_from_followers(chosen, layers, max_block)
    raise WorkbenchError(f"cannot place {n_shared} shared layers in layers {layers[0]}..{layers[-1]} with blocks of {max_block}: lower the budget")


def last_groups(n_layers: int, n_shared: int, max_block: int, eligible: tuple[int, int] | None) -> list[list[int]]:
    """The last inner layers: groups of `max_block` packed downwards from the last eligible layer."""
    layers = eligible_layers(n_layers, eligible)
    groups, end, remaining = [], layers[-1], n_shared
    while remaining:
        size = min(max_block - 1, remaining)
        groups.insert(0, list(range(end - size, end + 1)))
        end, remaining = end - size - 1, remaining - size
    if groups[0][0] < layers[0]:
        raise WorkbenchError(f"{n_shared} shared layers in blocks of {max_block} do not fit in layers {layers[0]}..{layers[-1]}")
    return groups


def similarity_groups(similarity: np.ndarray, n_shared: int, max_block: int, eligible: tuple[int, int] | None) -> list[list[int]]:
    """Followers chosen from the similarity matrix by the analysis' rule (`sharing.choose_groups`)."""
    layers = eligible_layers(len(similarity), eligible)
    groups = choose_groups(similarity, n_shared=n_shared, max_block=max_block, eligible=layers)
    groups = [list(map(int, g)) for g in groups if len(g) > 1]
    if len(followers(groups)) != n_shared:
        raise WorkbenchError(f"the similarity rule placed {len(followers(groups))} of {n_shared} shared layers: lower the budget or raise max_block")
    return groups


def teacher_similarity(model, tokenizer, tokens: torch.Tensor, profile: EchoAttProfile, progress: bool = True) -> np.ndarray:
    """The teacher's [L, L] attention similarity (`profile.metric`, head-averaged per-head values,
    sink column dropped unless `profile.drop_sink` is False), on blocks of training text."""
    texts = blocks(tokens, profile.similarity_len)[: profile.similarity_texts]
    result = analyze(model, tokenizer, texts, metrics=(profile.metric,), drop_sink=profile.drop_sink, seq_len=profile.similarity_len, progress=progress)
    return result.similarity(profile.metric, sink="dropped" if profile.drop_sink else "kept")


# -- measuring ---------------------------------------------------------------------------------
def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def held_out_ppl(model, tokens: torch.Tensor, profile: EchoAttProfile, max_windows: int | None) -> float:
    device = next(model.parameters()).device
    with _autocast(device):
        return perplexity(model, tokens, context_len=profile.eval_context, batch_size=profile.eval_batch, max_windows=max_windows, progress=False)["ppl"]


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of `fn` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def inference_speed(model, profile: EchoAttProfile) -> dict[str, float]:
    """Prefill tokens/s (batch × prefill_len, no cache), decode tokens/s (greedy, KV cache), and the
    KV cache's size after the prefill."""
    device, vocab = next(model.parameters()).device, model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(vocab, (profile.prefill_batch, profile.prefill_len), generator=generator).to(device)
    prefill_s = _timed(lambda: model(input_ids=prompt, use_cache=False), device, profile.speed_repeats)
    start = torch.randint(vocab, (profile.decode_batch, 16), generator=generator).to(device)
    n = profile.decode_tokens

    def decode():
        return sample(model, start, SampleConfig(max_new_tokens=n))  # no end-of-text: every run decodes n tokens

    decode_s = _timed(decode, device, profile.speed_repeats)
    return {"prefill_tok_s": prompt.numel() / prefill_s, "decode_tok_s": profile.decode_batch * n / decode_s, "kv_cache_mb": kv_cache_mb(model, prompt)}


@torch.no_grad()
def kv_cache_mb(model, prompt: torch.Tensor) -> float:
    """Megabytes the KV cache holds after a prefill of `prompt` (followers hold values only)."""
    output = model(input_ids=prompt, use_cache=True)
    cache = output_cache(output)
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def train_step_time(model, profile: EchoAttProfile, loss_fn: DistillationLoss | None = None) -> float:
    """Seconds per optimizer step (forward, backward, AdamW) on a copy of `model`.

    Default loss: next-token cross-entropy (the same for every model, so the times compare the
    architectures); pass a `DistillationLoss` to time a distillation step, teacher included.
    """
    clone = copy.deepcopy(model).float().train().requires_grad_(True)
    device = next(clone.parameters()).device
    optimizer = torch.optim.AdamW(clone.parameters(), lr=1e-6, fused=device.type == "cuda")
    loss_fn = loss_fn or DistillationLoss(None, DistillConfig(alpha=1.0, beta=0.0, chunk_tokens=profile.distill.chunk_tokens))
    batch = torch.randint(clone.config.vocab_size, (profile.batch_size, profile.block_len + 1), generator=torch.Generator().manual_seed(0)).to(device)

    def step():
        with _autocast(device):
            loss = loss_fn(clone, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _timed(step, device, profile.train_speed_steps)
    del clone, optimizer
    _free(device)
    return seconds


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def with_attention(model, attn: str):
    """A copy of `model` whose unshared layers run the `attn` kernel ("sdpa" or "eager")."""
    clone = copy.deepcopy(model)
    clone.set_attn_implementation(attn)
    return clone


# -- the experiment ----------------------------------------------------------------------------
@dataclass
class Arm:
    name: str
    kind: str  # "teacher" | "continued" | "similarity" | "random" | "last"
    n_shared: int = 0
    groups: list[list[int]] = field(default_factory=list)
    draw: int | None = None


def plan_arms(profile: EchoAttProfile, n_layers: int, similarity: np.ndarray) -> list[Arm]:
    """The teacher, the continued-trained teacher, then per budget: similarity, random draws, last."""
    arms = [Arm("teacher", "teacher"), Arm("teacher + CE (continued)", "continued")]
    for n in profile.budgets:
        arms.append(Arm(f"n={n} similarity", "similarity", n, similarity_groups(similarity, n, profile.max_block, profile.eligible)))
        for draw in range(profile.random_draws):
            groups = random_groups(n_layers, n, profile.max_block, profile.eligible, seed=profile.seed + 1000 * n + draw)
            arms.append(Arm(f"n={n} random#{draw + 1}", "random", n, groups, draw))
        arms.append(Arm(f"n={n} last", "last", n, last_groups(n_layers, n, profile.max_block, profile.eligible)))
    return arms


@dataclass
class ExperimentResult:
    profile: EchoAttProfile
    table: pd.DataFrame  # one row per arm (the teacher twice: sdpa and eager)
    similarity: np.ndarray  # [L, L] under profile.metric
    sweep: str
    run_ids: dict[str, int]
    device: str


Callback = Callable[[str, int, dict[str, float]], None]


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
        self.profile = profile = get_profile(profile, **overrides)
        self.progress = progress
        self.device = resolve_device("auto")
        if profile.teacher == "tiny":
            model, tokenizer = tiny_llama(
                n_layers=profile.tiny_layers, d_model=64, n_heads=4, n_kv_heads=2, max_len=max(profile.eval_context, profile.prefill_len) + 128,
                seed=profile.seed,
            )
            model = model.to(self.device).eval()
        else:
            model, tokenizer = load_model(profile.teacher, dtype="float32", device=self.device, attn="sdpa")
        self.teacher, self.tokenizer = model.requires_grad_(False), tokenizer
        # The KD teacher and every inference-speed measurement use bf16 on a GPU, as deployed.
        self.inference_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.teacher_kd = copy.deepcopy(model).to(self.inference_dtype)
        self.train_tokens, self.val_tokens = train_val_split(tokenize(load_corpus(profile.corpus), tokenizer))
        self.device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.n_layers = len(model.model.layers)
        self.similarity: np.ndarray | None = None
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
        """Attend: the teacher's [L, L] similarity (`profile.metric`), higher = more alike."""
        with self._threads():
            self.similarity = np.asarray(teacher_similarity(self.teacher, self.tokenizer, self.train_tokens, self.profile, self.progress))
        return self.similarity

    def choose_arms(self) -> list[Arm]:
        """Copy: the layers each arm shares (similarity-chosen, random draws, last inner)."""
        if self.similarity is None:
            self.attend()
        self.arms = plan_arms(self.profile, self.n_layers, self.similarity)
        return self.arms

    def adjust(self, callback: Callback | None = None) -> ExperimentResult:
        """Adjust, and measure: every arm's zero-shot and distilled perplexity, parameters, speed.

        `callback(arm, step, metrics)` receives the held-out perplexity during training (live curves).
        """
        with self._threads():
            return self._adjust(callback)

    def _adjust(self, callback: Callback | None) -> ExperimentResult:
        arms = self.arms or self.choose_arms()
        self.warm_up()
        self.profile = profile = self.fit_steps_to_budget(arms)
        sweep = f"echoatt-{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        teacher_params = count_parameters(self.teacher)
        rows, run_ids = [], {}
        for arm in tqdm(arms, desc="EchoAtt arms", disable=not self.progress):
            params = {"profile": asdict(profile), "arm": arm.kind, "n_shared": arm.n_shared, "groups": arm.groups, "draw": arm.draw}
            with start_run(KIND, arm.name, params, sweep=sweep) as run:
                run_ids[arm.name] = run.id
                new_rows = _run_arm(arm, self, profile, run, callback, self.progress)
                for row in new_rows:
                    row["params_change_pct"] = 100 * (row["params"] / teacher_params - 1)
                run.update_summary(rows=new_rows)
                rows += new_rows
            _free(self.device)
        table = _with_ratios(pd.DataFrame(rows))
        with start_run(KIND, "table", {"profile": asdict(profile)}, sweep=sweep) as run:
            run.log_artifact("table.json", table.to_dict(orient="records"))
            run.log_artifact("similarity.npy", self.similarity)
            run.log_artifact("results.md", results_markdown(table, profile, self.device_name).encode())
            run.update_summary(device=self.device_name, conclusion=conclusion(table))
            run_ids["table"] = run.id
        return ExperimentResult(profile, table, self.similarity, sweep, run_ids, self.device_name)

    def fit_steps_to_budget(self, arms: list[Arm]) -> EchoAttProfile:
        """The profile with `steps` lowered, for every arm alike, if the trained arms would not fit in
        `profile.train_budget_s` at the measured speed of one distillation step (hidden-state matching
        included, the costlier stage)."""
        profile = self.profile
        trained = [arm for arm in arms if arm.kind != "teacher"]
        if not profile.train_budget_s or not trained:
            return profile
        student = build_student(self.teacher, next((a.groups for a in trained if a.groups), []), profile.max_block)
        seconds = train_step_time(student, profile, DistillationLoss(self.teacher_kd, profile.distill))
        del student
        affordable = int(profile.train_budget_s / (len(trained) * seconds * 1.1))  # 10% for evaluations
        if affordable >= profile.steps:
            return profile
        steps = max(affordable, profile.eval_every)
        warnings.warn(f"{len(trained)} arms × {profile.steps} steps at {seconds:.3f} s/step exceed train_budget_s={profile.train_budget_s:.0f}: "
                      f"training {steps} steps per arm instead", stacklevel=2)
        return replace(profile, steps=steps)

    def warm_up(self) -> None:
        """On a GPU, one untimed pass of every speed measurement, so that one-off costs (CUDA context,
        cuBLAS handles, kernel selection) are not charged to the first model measured."""
        if self.device.type != "cuda":
            return
        for attn in ("sdpa", "eager"):
            _speed_row(self.teacher, self, self.profile, attn)


def _speed_row(model, experiment: EchoAttExperiment, profile: EchoAttProfile, attn: str) -> dict:
    measured = with_attention(model, attn).to(experiment.inference_dtype).eval()
    speed = inference_speed(measured, profile)
    kernel = attention_kernel(measured)
    del measured
    speed["train_step_s"] = train_step_time(with_attention(model, attn), profile)
    return {**speed, "kernel": kernel}


def run_experiment(profile: str | EchoAttProfile = "smoke", callback: Callback | None = None, progress: bool = True, **overrides) -> ExperimentResult:
    """Attend, choose the arms, adjust: the whole experiment in one call (see `EchoAttExperiment`)."""
    experiment = EchoAttExperiment(profile, progress=progress, **overrides)
    experiment.attend()
    experiment.choose_arms()
    return experiment.adjust(callback)


def _run_arm(arm: Arm, experiment: EchoAttExperiment, profile: EchoAttProfile, run: Run, callback: Callback | None, progress: bool) -> list[dict]:
    base = {"arm": arm.name, "kind": arm.kind, "n_shared": arm.n_shared, "followers": " ".join(map(str, followers(arm.groups)))}
    if arm.kind == "teacher":
        ppl = held_out_ppl(experiment.teacher, experiment.val_tokens, profile, profile.eval_windows)
        return [
            {**base, "arm": f"teacher ({attn})", "params": count_parameters(experiment.teacher), "zero_shot_ppl": ppl, "ppl": ppl,
             **_speed_row(experiment.teacher, experiment, profile, attn)}
            for attn in ("sdpa", "eager")
        ]

    model = copy.deepcopy(experiment.teacher) if arm.kind == "continued" else build_student(experiment.teacher, arm.groups, profile.max_block)
    model.requires_grad_(True)
    base["params"] = count_parameters(model)
    zero_shot = held_out_ppl(model, experiment.val_tokens, profile, profile.eval_windows)
    run.update_summary(zero_shot_ppl=zero_shot)
    # The continued-trained teacher has the teacher's architecture, hence its speed (measured there).
    speeds = [{**base, "kernel": attention_kernel(model)} if arm.kind == "continued" else {**base, **_speed_row(model, experiment, profile, "sdpa")}]
    if arm.kind == "similarity":  # the all-eager student too: eager teacher vs eager student
        speeds.append({**base, "arm": f"{arm.name} (eager)", **_speed_row(model, experiment, profile, "eager")})

    log_every = min(10, profile.steps)
    if arm.kind == "continued":
        loss = DistillationLoss(None, DistillConfig(alpha=1.0, beta=0.0, chunk_tokens=profile.distill.chunk_tokens), run=run, log_every=log_every)
    else:
        distill = replace(profile.distill, stage1_steps=int(profile.stage1_fraction * profile.steps))
        loss = DistillationLoss(experiment.teacher_kd, distill, run=run, log_every=log_every)

    def evaluate(model) -> dict[str, float]:
        metrics = {"val_ppl": held_out_ppl(model, experiment.val_tokens, profile, profile.curve_windows)}
        if callback is not None:
            callback(arm.name, loss.step, metrics)
        return metrics

    config = TrainConfig(
        steps=profile.steps, lr=profile.lr, warmup_steps=profile.warmup_steps, log_every=log_every,
        eval_every=profile.eval_every, checkpoint=False,
    )
    stream = batches(experiment.train_tokens, profile.batch_size, profile.block_len + 1, experiment.device, seed=profile.seed)
    if callback is not None:
        callback(arm.name, 0, {"val_ppl": held_out_ppl(model, experiment.val_tokens, profile, profile.curve_windows)})
    start = time.perf_counter()
    metrics = train(model, stream, config, loss_fn=loss, run=run, evaluate=evaluate, progress=progress)
    trained = {
        "zero_shot_ppl": zero_shot,
        "ppl": held_out_ppl(model, experiment.val_tokens, profile, profile.eval_windows),
        "train_tok_s": metrics.get("tokens_per_s", float("nan")),
        "train_wall_s": time.perf_counter() - start,
    }
    del model, loss
    return [{**row, **trained} for row in speeds]


def _with_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Speeds relative to the teacher with the same unshared-layer kernel (×1.15 = 15% faster)."""
    table = table.copy()
    for attn in ("sdpa", "eager"):
        teacher = table[table["arm"] == f"teacher ({attn})"].iloc[0]
        same = table["kernel"].str.startswith(attn)
        table.loc[same, "prefill_vs_teacher"] = table.loc[same, "prefill_tok_s"] / teacher["prefill_tok_s"]
        table.loc[same, "decode_vs_teacher"] = table.loc[same, "decode_tok_s"] / teacher["decode_tok_s"]
        table.loc[same, "train_vs_teacher"] = teacher["train_step_s"] / table.loc[same, "train_step_s"]
    return table


# -- reporting ---------------------------------------------------------------------------------
TABLE_COLUMNS = {
    "arm": "arm", "followers": "shared layers", "params": "params", "params_change_pct": "Δparams %",
    "zero_shot_ppl": "ppl zero-shot", "ppl": "ppl after training", "prefill_tok_s": "prefill tok/s", "decode_tok_s": "decode tok/s",
    "train_step_s": "train s/step", "kv_cache_mb": "KV cache MB", "prefill_vs_teacher": "prefill ×", "decode_vs_teacher": "decode ×", "train_vs_teacher": "train ×",
    "kernel": "attention kernel",
}


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table with readable column names and rounded numbers."""
    shown = table[[c for c in TABLE_COLUMNS if c in table]].rename(columns=TABLE_COLUMNS)
    return shown.round({"Δparams %": 2, "ppl zero-shot": 2, "ppl after training": 2, "prefill tok/s": 0, "decode tok/s": 0,
                        "train s/step": 4, "KV cache MB": 1, "prefill ×": 3, "decode ×": 3, "train ×": 3})


def results_markdown(table: pd.DataFrame, profile: EchoAttProfile, device: str) -> str:
    """A results section: setup line, the table, and the generated conclusion."""
    shown = display_table(table).astype(object)
    shown = shown.where(shown.notna(), "")
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns)
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    setup = (
        f"Device: {device}. Teacher: {profile.teacher}; {profile.steps} steps × {profile.batch_size}×{profile.block_len} tokens per trained arm "
        f"({profile.corpus} train split); perplexity on the held-out split in {profile.eval_context}-token windows; blocks of ≤{profile.max_block} "
        f"layers; layers chosen by {profile.metric} similarity{' without the sink column' if profile.drop_sink else ''} (per head, averaged). Speeds: prefill {profile.prefill_batch}×{profile.prefill_len} tokens (KV cache size after it), decode "
        f"{profile.decode_batch}×{profile.decode_tokens} tokens with KV cache, in {'bf16' if device != 'cpu' else 'fp32'}; training step = "
        f"forward+backward+AdamW on {profile.batch_size}×{profile.block_len} tokens. × columns: ratio to the teacher with the same kernel "
        "for its unshared layers (>1 = faster)."
    )
    return "\n".join([f"## EchoAtt (issue 4), {profile.name} profile", "", setup, "", header, *lines, "", conclusion(table)]) + "\n"


def conclusion(table: pd.DataFrame) -> str:
    """What the measured numbers say, budget by budget, and about each of the paper's claims."""
    teacher = table[table["arm"] == "teacher (sdpa)"].iloc[0]
    continued = table[table["kind"] == "continued"].iloc[0]
    students = table[table["kind"].isin(["similarity", "random", "last"]) & ~table["arm"].str.endswith("(eager)")]
    lines = [
        f"- Teacher: held-out perplexity {teacher['ppl']:.2f}; continued-trained on the same tokens (the fair baseline): "
        f"{continued['ppl']:.2f}."
    ]
    for n, rows in students.groupby("n_shared"):
        chosen, last = rows[rows["kind"] == "similarity"].iloc[0], rows[rows["kind"] == "last"].iloc[0]
        rand = rows[rows["kind"] == "random"]
        best = rows.loc[rows["ppl"].idxmin()]
        lines.append(
            f"- {n} shared layers ({chosen['params_change_pct']:+.2f}% parameters): similarity-chosen {chosen['zero_shot_ppl']:.2f} → "
            f"{chosen['ppl']:.2f} after distillation; random {rand['zero_shot_ppl'].mean():.2f} → {rand['ppl'].mean():.2f} "
            f"(mean of {len(rand)}, range {rand['ppl'].min():.2f}–{rand['ppl'].max():.2f}); last inner layers {last['zero_shot_ppl']:.2f} → "
            f"{last['ppl']:.2f}. Best: {best['arm']} ({best['ppl']:.2f}, {100 * (best['ppl'] / continued['ppl'] - 1):+.1f}% vs the fair "
            f"baseline, {100 * (best['ppl'] / teacher['ppl'] - 1):+.1f}% vs the teacher as is). Similarity choice "
            f"{'beat' if chosen['ppl'] < rand['ppl'].min() else 'did not beat every'} random draw"
            f"{'' if chosen['ppl'] < rand['ppl'].min() else (' (it beat the random mean)' if chosen['ppl'] < rand['ppl'].mean() else ' nor the random mean')}."
        )
    sharpest = students[students["n_shared"] == students["n_shared"].max()]
    top = sharpest[sharpest["kind"] == "similarity"].iloc[0]
    eager = table[table["arm"] == f"{top['arm']} (eager)"]

    def verdict(ok: bool) -> str:
        return "held" if ok else "did not hold"

    lines.append(
        f"- Claim \"about 4% fewer parameters\": {top['params_change_pct']:+.2f}% at {top['n_shared']} shared layers "
        f"({verdict(top['params_change_pct'] <= -3.5)} at this budget)."
    )
    speed = f"prefill ×{top['prefill_vs_teacher']:.3f}, decode ×{top['decode_vs_teacher']:.3f} against the fused-attention (sdpa) teacher"
    if not eager.empty:
        speed += f"; ×{eager.iloc[0]['prefill_vs_teacher']:.3f} and ×{eager.iloc[0]['decode_vs_teacher']:.3f} eager against eager"
    lines.append(
        f"- Claim \"+15% inference speed\" ({top['arm']}): {speed} — {verdict(min(top['prefill_vs_teacher'], top['decode_vs_teacher']) >= 1.15)} "
        f"against the fused teacher. Its KV cache is {100 * (top['kv_cache_mb'] / teacher['kv_cache_mb'] - 1):+.1f}% (followers cache values only)."
    )
    train_eager = f", ×{eager.iloc[0]['train_vs_teacher']:.3f} eager against eager" if not eager.empty else ""
    lines.append(
        f"- Claim \"+25% training speed\": training step ×{top['train_vs_teacher']:.3f} against the sdpa teacher{train_eager} — "
        f"{verdict(top['train_vs_teacher'] >= 1.25)}."
    )
    best_student = students.loc[students["ppl"].idxmin()]
    lines.append(
        f"- Claim \"no loss in quality\": the best student reaches {best_student['ppl']:.2f} against {continued['ppl']:.2f} for the "
        f"continued-trained teacher — {verdict(best_student['ppl'] <= continued['ppl'])} against the fair baseline"
        f" ({verdict(best_student['ppl'] <= teacher['ppl'])} against the teacher as is)."
    )
    return "\n".join(lines)


class LiveCurves:
    """Held-out perplexity of every arm against the training step, redrawn in place in a notebook.

    Pass as `callback` to `adjust`; outside IPython it only collects the points (`figure`).
    """

    def __init__(self, title: str = "Held-out perplexity during training"):
        import plotly.graph_objects as go

        from ..plots import LAYOUT

        self.figure = go.Figure()
        self.figure.update_layout(title=title, xaxis_title="optimizer step", yaxis_title="perplexity (curve windows)", yaxis_type="log", **LAYOUT)
        self._handle = None

    def __call__(self, arm: str, step: int, metrics: dict[str, float]) -> None:
        traces = {trace.name: trace for trace in self.figure.data}
        if arm in traces:
            traces[arm].x, traces[arm].y = (*traces[arm].x, step), (*traces[arm].y, metrics["val_ppl"])
        else:
            self.figure.add_scatter(x=[step], y=[metrics["val_ppl"]], name=arm, mode="lines+markers")
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        # A raw bundle with a display id: plotly's own display path ignores ids (the figure would be
        # appended at every point), and `_repr_mimebundle_` re-embeds plotly.js (4.8 MB) each time.
        import plotly.io as pio

        bundle = {}
        for name in pio.renderers.default.split("+"):
            bundle.update(pio.renderers[name].to_mimebundle(self.figure.to_dict()))
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
