"""The Relaxed Recursive Transformers experiment: convert, relax, uptrain, exit early, batch depth-wise.

Over 400 lines because the arms (conversion, relaxation, uptraining), early exit and depth-wise batching
share one teacher, one token stream and one run bookkeeping; each step is one method.

Relaxed Recursive Transformers (Bae et al., arXiv:2410.20672). Every arm trains for the same steps
on the same tokens (`steps` × `batch_size` × `block_len`, drawn by its seed), once per seed of
`seeds` (arms of one seed share the data order, so differences pair by seed):

- the full model continued-trained (the fair upper target; the reference run);
- recursive models, B ∈ `loops`, initialised Stepwise / Average / Lower, no LoRA;
- each of `lora_inits` (Average, Stepwise) at B = loops[0] relaxed with SVD-initialised LoRA at
  every rank of `ranks` (the paper: Average rises with rank, Stepwise is U-shaped), and the Average
  model with a zero-initialised LoRA at `zero_rank`;
- the reduced-depth model (K = L/B layers, same width) trained from scratch (the paper's
  "reduced-size" baseline).

One loss for every arm: CE + forward KL from the full model as loaded (`workbench.distill`, α = β =
`kd_alpha`, `kd_beta`), all parameters trainable, the baselines included, so that no arm gains or
loses by its objective. It costs the two baselines one forward of the teacher per step (about a
third more compute for the continued model). `ce_baselines` adds the baselines trained with CE
alone (the former protocol) beside them; they are reported, never judged. After training, every
arm's held-out perplexity and zero-shot accuracy (`workbench.zeroshot`) are measured.

Then the Stepwise B = loops[0] model is post-trained for early exit, its oracle and
confidence-threshold exits measured, and the exits drive the depth-wise batching simulation, with
decode costs measured on that model and with work-proportional costs, the KV debt of exited
tokens counted (`batching`). Every arm is a run of kind "recursive".
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from .. import cards, data
from ..data import batches, check_epochs, token_splits
from ..deadline import ArmClock
from ..distill import DistillationLoss, DistillConfig
from ..errors import WorkbenchError
from ..evaluate import perplexity
from ..models import MODEL_SIZES, load_model, resolve_device, tiny_llama
from ..runs import RunKind, start_run
from ..train import TrainConfig, train
from ..zeroshot import ZeroShotTasks, accuracy, build_tasks, causal_loglik
from . import batching, early_exit
from .convert import INITS, convert
from .model import KV_NOTE
from .profile import ARM_SETS, RecursiveProfile
from .relax import Factors, non_embedding_parameters, relax, residual_factors

KIND = RunKind(
    "recursive",
    headline="ppl",
    goal="min",
    description="Relaxed Recursive Transformers: held-out perplexity of looped, LoRA-relaxed and baseline models, "
    "equal uptraining",
)
Callback = Callable[[str, int, dict[str, float]], None]


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str  # "continued" | "recursive" | "scratch"
    loops: int = 1
    init: str = ""
    lora: str = ""  # "" | "svd" | "zero"
    rank: int = 0
    seed: int = 0
    loss: str = "kd"  # "kd": CE + forward KL from the full model (every arm); "ce": cross-entropy alone


def loss_config(arm: Arm, profile: RecursiveProfile) -> DistillConfig:
    """The arm's objective: the same CE + KL for every arm, baselines included; CE alone for "ce" arms."""
    if arm.loss == "ce":
        return DistillConfig(alpha=1.0, beta=0.0)
    return DistillConfig(alpha=profile.kd_alpha, beta=profile.kd_beta)


def plan_arms(profile: RecursiveProfile, n_layers: int) -> list[Arm]:
    """The arms of `profile.arms` for every seed; each subset keeps the continued baseline."""
    if profile.arms not in ARM_SETS:
        raise WorkbenchError(f"unknown arms {profile.arms!r}: use one of {', '.join(ARM_SETS)}")
    if unknown := sorted(set(profile.inits) - set(INITS)):
        raise WorkbenchError(f"unknown initialisation(s) {', '.join(unknown)}: use {', '.join(INITS)}")
    for loops in profile.loops:
        if n_layers % loops:
            raise WorkbenchError(
                f"{n_layers} layers cannot be looped {loops} times: each of loops must divide the depth"
            )
    arms = []
    for seed in range(profile.seed, profile.seed + profile.seeds):
        suffix = "" if seed == profile.seed else f" (seed {seed})"
        arms += [
            Arm(a.name + suffix, a.kind, a.loops, a.init, a.lora, a.rank, seed, a.loss)
            for a in _arms(profile, n_layers)
        ]
    return arms


def _arms(profile: RecursiveProfile, n_layers: int) -> list[Arm]:
    """One seed's arms (seed field left at 0)."""
    first = profile.loops[0]
    baselines = ("kd", "ce") if profile.ce_baselines else ("kd",)
    label = {"kd": "", "ce": ", CE only"}
    arms = [Arm(f"full model, continued{label[loss]}", "continued", loss=loss) for loss in baselines]
    plain = [Arm(f"B={b} {init}", "recursive", b, init) for b in profile.loops for init in profile.inits]
    if profile.arms in ("all", "no_lora"):
        arms += plain
        arms += [
            Arm(f"reduced depth K={n_layers // b}, scratch{label[loss]}", "scratch", b, loss=loss)
            for b in profile.loops
            for loss in baselines
        ]
    if profile.arms == "lora":
        keep = {"stepwise", *profile.lora_inits}  # r = 0 of each rank curve; Stepwise also for the early exit
        arms += [arm for arm in plain if arm.loops == first and arm.init in keep]
    if profile.arms in ("all", "lora"):
        arms += [
            Arm(f"B={first} {init} + SVD LoRA r={r}", "recursive", first, init, "svd", r)
            for init in profile.lora_inits
            for r in profile.ranks
        ]
        zero = profile.zero_rank
        arms.append(Arm(f"B={first} average + zero LoRA r={zero}", "recursive", first, "average", "zero", zero))
    return arms


def frequent_vocabulary(tokens: torch.Tensor, size: int) -> torch.Tensor:
    """Token ids renumbered by frequency, the `size` - 1 most frequent kept and the rest sharing the
    last id: a tiny random model (the smoke profile) then spends its time in its layers rather
    than in a 49k-way softmax."""
    ranks = torch.empty_like(counts := torch.bincount(tokens))
    ranks[counts.argsort(descending=True)] = torch.arange(len(counts))
    return ranks[tokens].clamp(max=size - 1)


@dataclass
class RecursiveResult:
    """`table`: one row per arm (and the full model as loaded). `exits`: per loop, the exit's
    perplexity and oracle exit rate before and after early-exit post-training. `thresholds`: per
    exit rule, mean loops, agreement with the final loop, perplexity, exit rate per loop.
    `throughput`: per cost model, request draw, batching scheme and exit rule (simulated, KV debt
    counted). `costs`: measured seconds of one loop per batch size."""

    table: pd.DataFrame
    exits: pd.DataFrame = field(default_factory=pd.DataFrame)
    thresholds: pd.DataFrame = field(default_factory=pd.DataFrame)
    throughput: pd.DataFrame = field(default_factory=pd.DataFrame)
    costs: dict[int, float] = field(default_factory=dict)
    sweep: str = ""


class RecursiveExperiment:
    """Loads the teacher and the text once, then runs arms; `run()` does everything in order."""

    def __init__(self, profile: RecursiveProfile, callback: Callback | None = None, progress: bool = True):
        self.profile, self.callback, self.progress = profile, callback, progress
        self.device = resolve_device("auto")
        self.sweep = f"recursive-{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.teacher, tokenizer = self._teacher_model()
        self.tokenizer = tokenizer
        splits = token_splits(profile.corpus, tokenizer)
        check_epochs(profile, profile.train_tokens_per_arm, splits.n_train)
        self.train_tokens, self.val_tokens = splits.train, splits.val
        if profile.vocab:  # one ranking of the whole stream, as before the split
            whole = torch.cat((torch.as_tensor(np.asarray(splits.train, dtype=np.int64)), splits.val))
            ranked = frequent_vocabulary(whole, profile.vocab)
            self.train_tokens, self.val_tokens = ranked[: splits.n_train], ranked[splits.n_train :]
        self.tasks = self._zero_shot_tasks(splits.val, tokenizer)
        if profile.teacher_steps:
            self._pretrain_teacher()
        self.teacher.eval().requires_grad_(False)
        self.teacher_kd = copy.deepcopy(self.teacher).to(torch.bfloat16) if self.device.type == "cuda" else self.teacher
        self.arms = plan_arms(profile, self.teacher.config.num_hidden_layers)
        self._factors: dict[tuple[int, str], Factors] = {}  # residual SVDs by (loops, init), shared across ranks

    def _teacher_model(self):
        if self.profile.model == "tiny":
            dims = {**MODEL_SIZES["tiny"], "n_layers": self.profile.tiny_layers}
            model, tokenizer = tiny_llama(**dims, vocab_size=self.profile.vocab or None, seed=self.profile.seed)
            return model.to(self.device), tokenizer
        if self.profile.vocab:
            raise WorkbenchError(
                "vocab (a reduced vocabulary) is for the tiny random model only: set vocab=0 for a pretrained model"
            )
        return load_model(self.profile.model, dtype=torch.float32, device=self.device)

    def _zero_shot_tasks(self, val: torch.Tensor, tokenizer) -> ZeroShotTasks:
        """The zero-shot items, built on the tokenizer's ids of the held-out text (the word boundaries
        are the tokenizer's), then renumbered as the models see them (the reduced vocabulary)."""
        profile = self.profile
        tasks = build_tasks(
            val, tokenizer, n_items=profile.zeroshot_items, context=profile.zeroshot_context, seed=profile.seed
        )
        if not profile.vocab:
            return tasks
        ids = torch.zeros(int(val.max()) + 1, dtype=torch.long)
        ids[val] = self.val_tokens  # every item's tokens come from the held-out text
        return tasks.mapped(ids)

    def zero_shot(self, model: torch.nn.Module) -> dict[str, float]:
        return accuracy(self.tasks, causal_loglik(model, self.device))

    def _pretrain_teacher(self) -> None:
        """A random tiny teacher is first trained a little, so that conversion starts from learned layers."""
        config = TrainConfig(steps=self.profile.teacher_steps, lr=3e-3, warmup_steps=5, log_every=10, checkpoint=False)
        stream = batches(
            self.train_tokens,
            self.profile.batch_size,
            self.profile.block_len + 1,
            self.device,
            seed=self.profile.seed + 1000,
        )
        train(self.teacher, stream, config, progress=self.progress)

    # -- evaluation ------------------------------------------------------------------------------
    def ppl(self, model: torch.nn.Module, windows: int | None) -> float:
        return perplexity(
            model,
            self.val_tokens,
            context_len=self.profile.block_len,
            max_windows=windows,
            batch_size=8,
            progress=False,
        )["ppl"]

    def epochs(self) -> float:
        """Tokens each arm sees over the unique training tokens."""
        return self.profile.steps * self.profile.batch_size * self.profile.block_len / len(self.train_tokens)

    # -- arms ------------------------------------------------------------------------------------
    def build(self, arm: Arm) -> torch.nn.Module:
        if arm.kind == "continued":
            return copy.deepcopy(self.teacher)
        if arm.kind == "scratch":
            settings = {
                k: v for k, v in self.teacher.config.to_dict().items() if k != "layer_types"
            }  # layer_types has the old depth
            config = LlamaConfig(
                **{**settings, "num_hidden_layers": self.teacher.config.num_hidden_layers // arm.loops}
            )
            torch.manual_seed(arm.seed)
            return LlamaForCausalLM(config).to(self.device)
        model = convert(self.teacher, arm.loops, arm.init, self.profile.tie_norms)
        if arm.lora == "svd" and (arm.loops, arm.init) not in self._factors:
            self._factors[arm.loops, arm.init] = residual_factors(model, self.teacher)
        if arm.lora:
            relax(
                model, self.teacher, arm.rank, arm.lora, seed=arm.seed, factors=self._factors.get((arm.loops, arm.init))
            )
        return model

    def train_arm(self, arm: Arm) -> tuple[dict, torch.nn.Module]:
        profile = self.profile
        params = profile.as_dict() | {
            "arm": arm.name,
            "arm_kind": arm.kind,
            "arm_loops": arm.loops,
            "init": arm.init,
            "lora": arm.lora,
            "rank": arm.rank,
            "arm_seed": arm.seed,
            "arm_loss": arm.loss,
        }
        with start_run(KIND, arm.name, params=params, sweep=self.sweep) as run:
            if arm.kind == "continued":
                run.mark_reference()
            model = self.build(arm)
            model.requires_grad_(True)
            zero_shot = self.ppl(model, profile.eval_windows)
            log_every = min(10, profile.steps)
            objective = loss_config(arm, profile)
            teacher = self.teacher_kd if objective.beta > 0 else None
            loss = DistillationLoss(teacher, objective, run=run, log_every=log_every)

            def evaluate(m: torch.nn.Module) -> dict[str, float]:
                metrics = {"val_ppl": self.ppl(m, profile.curve_windows)}
                if self.callback is not None:
                    self.callback(arm.name, loss.step, metrics)
                return metrics

            if self.callback is not None:
                self.callback(arm.name, 0, {"val_ppl": self.ppl(model, profile.curve_windows)})
            config = TrainConfig(
                steps=profile.steps,
                lr=profile.scratch_lr if arm.kind == "scratch" else profile.lr,
                warmup_steps=profile.warmup_steps,
                log_every=log_every,
                eval_every=profile.eval_every,
                checkpoint=False,
                compile=False,  # the shared DistillationLoss counts its calls in Python: compiled, it would recompile
            )
            stream = batches(self.train_tokens, profile.batch_size, profile.block_len + 1, self.device, seed=arm.seed)
            start = time.perf_counter()
            metrics = train(model, stream, config, loss_fn=loss, run=run, evaluate=evaluate, progress=self.progress)
            row = {
                "arm": arm.name,
                "kind": arm.kind,
                "loops": arm.loops,
                "init": arm.init,
                "lora": arm.lora,
                "rank": arm.rank,
                "seed": arm.seed,
                "loss": arm.loss,
                "non_emb_params": non_embedding_parameters(model),
                "zero_shot_ppl": zero_shot,
                "ppl": self.ppl(model, profile.eval_windows),
                **self.zero_shot(model),
                "tokens": profile.steps * profile.batch_size * profile.block_len,
                "epochs": self.epochs(),
                "train_tok_s": metrics.get("tokens_per_s", float("nan")),
                "train_s": time.perf_counter() - start,
            }
            run.update_summary(**{k: v for k, v in row.items() if k not in ("arm", "kind")})
            self.card(run, arm, model, distilled=loss.teacher is not None)
        return row, model

    def card(self, run, arm: Arm, model: torch.nn.Module, distilled: bool) -> None:
        """The arm's model card (`workbench.cards`), measured as deployed (bf16 on a GPU). Its training FLOPs
        count each shared layer once per loop, and the teacher's forwards when the arm distils."""
        p = self.profile
        tokens = p.steps * p.batch_size * p.block_len
        flops = cards.train_flops(model, tokens, p.block_len)
        if distilled:
            flops += cards.forward_flops(self.teacher, tokens, p.block_len)
        cards.write_card(run, model, idea="recursive", arm=arm.name, tokenizer=self.tokenizer, profile=p.name,
                         training_tokens=tokens, training_context=p.block_len, training_flops=flops, corpus=p.corpus,
                         token_ids=self.vocab_ids,
                         extra={"loops": arm.loops, "init": arm.init, "lora": arm.lora, "rank": arm.rank}
                         | ({"kv_note": KV_NOTE} if arm.loops > 1 else {}))  # fmt: skip

    @functools.cached_property
    def vocab_ids(self) -> torch.Tensor | None:
        """Tokenizer id → the id a reduced-vocabulary model sees (None: the full vocabulary), ranked over the
        whole stream as `__init__` ranks it; ids the stream never holds share the last id."""
        if not self.profile.vocab:
            return None
        splits = data.token_splits(self.profile.corpus, self.tokenizer)
        whole = torch.cat((torch.as_tensor(np.asarray(splits.train, dtype=np.int64)), splits.val))
        ids = torch.full((len(self.tokenizer),), self.profile.vocab - 1, dtype=torch.long)
        ids[whole] = frequent_vocabulary(whole, self.profile.vocab)
        return ids

    def teacher_row(self) -> dict:
        return {
            "arm": "full model, as loaded",
            "kind": "teacher",
            "loops": 1,
            "init": "",
            "lora": "",
            "rank": 0,
            "seed": self.profile.seed,
            "loss": "",
            "non_emb_params": non_embedding_parameters(self.teacher),
            "zero_shot_ppl": (p := self.ppl(self.teacher, self.profile.eval_windows)),
            "ppl": p,
            **self.zero_shot(self.teacher),
            "tokens": 0,
            "epochs": 0.0,
            "train_tok_s": float("nan"),
            "train_s": 0.0,
        }

    # -- early exit and depth-wise batching ------------------------------------------------------
    def early_exit(self, model: torch.nn.Module, result: RecursiveResult) -> None:
        """Post-train `model` with L_final + c·Σ KL(sg(p_B) ‖ p_b), measure its exits, simulate CDB."""
        profile = self.profile
        name = f"B={model.loops} stepwise + early exit"
        with start_run(
            KIND, name, params=profile.as_dict() | {"arm": name, "arm_kind": "early_exit"}, sweep=self.sweep
        ) as run:
            windows = profile.eval_windows

            def measure(stage: str) -> early_exit.LoopPredictions:
                predictions = early_exit.loop_predictions(
                    model, self.val_tokens, profile.block_len, windows, progress=False
                )
                rates = early_exit.exit_rates(early_exit.oracle_exits(predictions), predictions.loops)
                for b in range(predictions.loops):
                    rows.append(
                        {
                            "stage": stage,
                            "loop": b + 1,
                            "exit_ppl": float(np.exp(predictions.nll[b].mean())),
                            "oracle_exit_rate": rates[b],
                        }
                    )
                return predictions

            rows: list[dict] = []
            measure("before")
            loss = early_exit.EarlyExitLoss(weight=profile.exit_weight, run=run, log_every=min(10, profile.exit_steps))
            config = TrainConfig(
                steps=profile.exit_steps,
                lr=profile.lr,
                warmup_steps=min(profile.warmup_steps, profile.exit_steps),
                log_every=min(10, profile.exit_steps),
                checkpoint=False,
            )
            stream = batches(
                self.train_tokens, profile.batch_size, profile.block_len + 1, self.device, seed=profile.seed + 500
            )
            train(model.requires_grad_(True), stream, config, loss_fn=loss, run=run, progress=self.progress)
            after = measure("after")
            result.exits = pd.DataFrame(rows)

            rules = {"oracle": early_exit.oracle_exits(after)} | {
                f"confidence ≥ {t}": early_exit.threshold_exits(after, t) for t in profile.thresholds
            }
            result.thresholds = pd.DataFrame(
                [
                    {
                        "rule": rule,
                        **early_exit.exit_summary(after, exits),
                        **{
                            f"exit_rate_loop{b + 1}": r for b, r in enumerate(early_exit.exit_rates(exits, after.loops))
                        },
                    }
                    for rule, exits in rules.items()
                ]
            )
            result.costs = batching.loop_step_costs(model, profile.cost_batch_sizes, profile.cost_context)
            result.throughput = self.simulate(rules, after.loops, result.costs)
            oracle = result.thresholds.iloc[0]
            cdb = result.throughput.query("scheme == 'cdb' and exit_rule == 'oracle' and costs == 'measured'").iloc[0]
            run.update_summary(
                ppl=float(np.exp(after.nll[-1].mean())),
                oracle_mean_loops=oracle["mean_loops"],
                cdb_speedup_vs_csb=cdb["speedup_vs_csb"],
                launch_bound=batching.launch_bound(result.costs),
                simulated=True,
            )
            run.log_artifact("loop_costs.json", {str(k): v for k, v in result.costs.items()})
            run.log_artifact("oracle_exits.npy", rules["oracle"].astype(np.int8))
            run.log_artifact("throughput.json", result.throughput.to_dict(orient="records"))

    def simulate(self, rules: dict[str, np.ndarray], loops: int, costs: dict[int, float]) -> pd.DataFrame:
        """Simulated throughput of every scheme, both cost models, `cdb_draws` request queues, with the
        KV debt of exited tokens filled at the cost of the K/V projections (state copying)."""
        profile = self.profile
        return batching.throughput_table(
            rules,
            loops,
            costs,
            slots=profile.cdb_slots,
            count=profile.cdb_requests,
            length=profile.cdb_gen_len,
            draws=profile.cdb_draws,
            seed=profile.seed,
            kv_fill=batching.kv_fill_fraction(self.teacher.config),
        )

    def run(self) -> RecursiveResult:
        """Every arm, seed after seed, then the early exit and the batching simulation on the first seed's
        Stepwise model. Under a time limit (`workbench.deadline`) an arm that would end past it is not started
        (the estimate: the longest arm of its kind, LoRA or not); once the early-exit model exists, each arm
        also keeps time for the early exit, whose verdicts (batching) no other arm gives. The seed-major order
        means a cut run loses whole later seeds first, and the paired verdicts keep the seeds trained."""
        rows = [self.teacher_row()]
        exit_model = None
        clock = ArmClock()
        for arm in self.arms:
            kind = f"{arm.kind} {arm.lora or 'plain'}"
            later = ("early exit",) if exit_model is not None and self.profile.exit_steps > 0 else ()
            if not clock.admit(arm.name, kind, *later):
                continue
            with clock.timing(kind):
                row, model = self.train_arm(arm)
            rows.append(row)
            first_stepwise = (
                arm.kind == "recursive"
                and arm.init == "stepwise"
                and arm.loops == self.profile.loops[0]
                and not arm.lora
            )
            if first_stepwise and arm.seed == self.profile.seed and self.profile.arms in ("all", "lora"):
                exit_model = model
            else:
                del model
        result = RecursiveResult(pd.DataFrame(rows), sweep=self.sweep)
        if exit_model is not None and self.profile.exit_steps > 0:
            if clock.admit("early exit (post-training, exits, batching)", "early exit"):
                self.early_exit(exit_model, result)
        result.table.attrs["not_trained"] = clock.announce()
        return result


def run_experiment(
    profile: str | RecursiveProfile = "smoke", callback: Callback | None = None, progress: bool = True, **overrides
) -> RecursiveResult:
    """Resolve the profile, run every arm, the early exit and the batching simulation."""
    settings = RecursiveProfile.resolve(profile, **overrides)
    settings = RecursiveProfile.resolve(
        settings,
        **{k: tuple(getattr(settings, k)) for k in ("loops", "inits", "ranks", "thresholds", "cost_batch_sizes")},
    )
    return RecursiveExperiment(settings, callback, progress).run()
