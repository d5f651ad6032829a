"""The soft time limit: which arms still fit, what the reports say about the ones that did not, and a notebook
run past its deadline that still ends with its conclusion."""

import json
import time
from pathlib import Path

import pytest
from test_cpu_report import gqa, precisions, trained
from test_echoatt_experiment import constructed_table, seeds_table

from workbench import deadline, notebook, verdicts
from workbench.cpu import report as cpu_report
from workbench.deadline import ArmClock
from workbench.echoatt.report import claims, conclusion
from workbench.errors import WorkbenchError


class Ticks:
    """A clock the test advances: every arm takes exactly the seconds the test gives it."""

    def __init__(self, start: float = 0.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(clock: ArmClock, ticks: Ticks, arms: list[tuple[str, str, float]], later: tuple[str, ...] = ()) -> list[str]:
    """Start the arms `clock` admits, each taking its seconds; the names trained."""
    done = []
    for name, kind, seconds in arms:
        if clock.admit(name, kind, *later):
            with clock.timing(kind):
                ticks.advance(seconds)
            done.append(name)
    return done


def test_without_a_deadline_every_arm_starts(monkeypatch):
    monkeypatch.delenv(deadline.ENV, raising=False)
    clock = ArmClock(clock=(ticks := Ticks()))
    assert run(clock, ticks, [("a", "x", 1e6), ("b", "x", 1e6)]) == ["a", "b"] and clock.skipped == []


def test_an_arm_starts_only_when_the_longest_of_its_kind_still_fits():
    ticks = Ticks()
    clock = ArmClock(deadline=100.0, clock=ticks)
    arms = [("t", "teacher", 1), ("s1", "student", 30), ("s2", "student", 40), ("s3", "student", 10),
            ("c", "continued", 5)]  # fmt: skip
    # t at 0 (no estimate yet), s1 at 1 (estimate: the longest of any kind, 1 s), s2 at 31 (30 s fits in 69),
    # s3 at 71: the longest student took 40 s > 29 s left; c: never measured, the longest of any kind (40 s)
    assert run(clock, ticks, arms) == ["t", "s1", "s2"]
    assert clock.skipped == ["s3", "c"] and clock.estimate("student") == 40 and clock.estimate("other") == 40


def test_time_kept_for_later_arms_a_verdict_needs():
    ticks = Ticks()
    clock = ArmClock(deadline=100.0, clock=ticks)
    assert run(clock, ticks, [("pair", "paired", 30), ("extra", "unpaired", 30)], later=("paired", "paired")) == [
        "pair"
    ]  # 30 + 2 x 30 > 70 left
    assert clock.fits("paired", "paired") and not clock.fits("paired", "paired", "paired")


def test_a_passed_deadline_starts_nothing_and_announces_one_line(capsys):
    clock = ArmClock(deadline=time.time() - 1)
    assert not clock.admit("n=2 similarity", "similarity") and not clock.admit("n=2 last", "last")
    assert clock.announce() == ["n=2 similarity", "n=2 last"]
    assert capsys.readouterr().out == "time limit: 2 arms not trained: n=2 similarity, n=2 last\n"


def test_the_deadline_comes_from_the_environment_with_a_reserve_for_the_report(monkeypatch):
    assert deadline.soft_deadline(100, now=1000.0) == 1085.0  # 15% kept for the report cells
    assert deadline.soft_deadline(100, reserve=30, now=1000.0) == 1070.0
    with pytest.raises(WorkbenchError, match="positive seconds"):
        deadline.soft_deadline(0)
    monkeypatch.setenv(deadline.ENV, "1234.5")
    assert ArmClock().deadline == 1234.5
    monkeypatch.setenv(deadline.ENV, "soon")
    with pytest.raises(WorkbenchError, match="not unix seconds"):
        deadline.from_env()


def test_conclusions_list_the_untrained_arms_smoke_or_not():
    names = ["n=2 random#1", "n=2 last"]
    line = "time limit: 2 arms not trained: n=2 random#1, n=2 last"
    assert line in verdicts.conclusion([], profile="smoke", not_trained=names)
    assert line in verdicts.conclusion([], profile="full", not_trained=names)
    assert verdicts.conclusion([], profile="smoke") == verdicts.SMOKE_NOTICE


def test_echoatt_claims_without_their_arms_or_seeds_are_not_testable_for_the_time_limit():
    full = constructed_table(params_pct=-3.95, speed=1.2, train_speed=1.3, student_ppl=12.6)
    # the unpaired arms and the second seeds cut: speed and size still judged, quality says why not
    table = full[~full["kind"].isin(["random", "last"])].copy()
    table.attrs["not_trained"] = ["n=12 random#1", "n=12 last", "teacher + CE (continued) seed=1"]
    found = claims(table, seeds_table((12.6,), continued=(12.62,)))
    assert found["prefill_speed"].outcome == verdicts.HELD
    assert found["no_quality_loss"].outcome == verdicts.NOT_TESTABLE
    assert found["no_quality_loss"].detail == deadline.NOT_TRAINED
    text = conclusion(table, profile="full")
    assert "similarity-chosen" in text and "random" not in text.split("time limit")[0]
    assert "time limit: 3 arms not trained" in text
    # only the teacher measured: every claim not testable, the conclusion still written
    teacher = full[full["kind"] == "teacher"].copy()
    teacher.attrs["not_trained"] = ["teacher + CE (continued)", "n=12 similarity"]
    assert {v.detail for v in claims(teacher).values()} == {deadline.NOT_TRAINED}
    assert "continued-trained on the same tokens: not trained within the time limit" in conclusion(
        teacher, profile="full"
    )


def test_cpu_gqa_quality_without_its_seeds_is_not_testable_for_the_time_limit():
    table = trained()
    table = table[~((table["variant"] == "GQA 8/2") & (table["seed"] > 0)) & ~table["variant"].str.startswith("GEB")]
    table = table.copy()
    table.attrs["not_trained"] = ["GQA 8/2 seed 1", "GQA 8/2 seed 2", "GEB-shaped GQA 8/2, untied seed 0"]
    text = cpu_report.conclusion(precisions(), gqa(), table, profile="full")
    (line,) = [line for line in text.splitlines() if "costs no quality" in line]
    assert deadline.NOT_TRAINED in line and "time limit: 3 arms not trained" in text
    nothing = trained().iloc[0:0].copy()
    nothing.attrs["not_trained"] = ["MHA 8/8 seed 0", "GQA 8/2 seed 0"]
    text = cpu_report.conclusion(precisions(), gqa(), nothing, profile="full")
    assert "GQA 8/2 costs no quality against MHA" in text and deadline.NOT_TRAINED in text


@pytest.mark.slow
def test_a_smoke_notebook_past_its_deadline_still_ends_with_its_conclusion(tmp_path):
    """EchoAtt's smoke notebook with a deadline already passed: the teacher is measured, no arm trains, and
    the speed rounds, table, figures and conclusion still run, the conclusion listing every untrained arm."""
    result = notebook.run_notebook("02_echoatt_distillation", profile="smoke", output_dir=tmp_path,
                                   progress=False, html=False, deadline=time.time() - 1)  # fmt: skip
    cells = json.loads(Path(result.notebook).read_text())["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert text.count("arms not trained: teacher + CE (continued), n=2 similarity") == 2  # printed; in the conclusion
    assert verdicts.SMOKE_NOTICE in text


class Counter:
    """A clock that advances one unit per reading: `ArmClock` reads it once to admit an arm and twice to time
    it, so every arm lasts one unit and a deadline of 3n admits exactly n arms."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.mark.slow
def test_galore_cut_by_its_deadline_keeps_the_sweep_and_reports_the_rest(monkeypatch):
    """Smoke GaLore with room for five arms: the learning-rate sweep and the official-history arm train; the
    second seed and the fine-tuning do not, and the report (summary, figures, conclusion) still builds."""
    from types import SimpleNamespace

    from workbench.galore import experiment as galore_experiment
    from workbench.galore import report as galore_report
    from workbench.galore.profile import GaloreProfile

    monkeypatch.setattr(galore_experiment, "ArmClock", lambda: ArmClock(deadline=3 * 5, clock=Counter()))
    results = galore_experiment.run_experiment(GaloreProfile.resolve("smoke"), progress=False)
    assert len(results.table) == 5 and results.reference is None
    skipped = results.table.attrs["not_trained"]
    assert sum(name.startswith("pretrain") for name in skipped) == 4 and sum("finetune" in n for n in skipped) == 4
    galore_report.summary(results), galore_report.loss_curves(results), galore_report.cost_bars(results)
    text = galore_report.conclusion(results.table, profile=SimpleNamespace(name="full", seeds=2))
    assert deadline.NOT_TRAINED in text and "time limit: 8 arms not trained" in text


@pytest.mark.slow
def test_recursive_cut_by_its_deadline_loses_later_seeds_first(monkeypatch):
    """Smoke recursive over two seeds (four arms each) with room for five arms: the first seed's arms and the
    second seed's first train (seed-major order); the paired verdicts left with one seed say why, and the report
    builds."""
    from types import SimpleNamespace

    from workbench.recursive import experiment as recursive_experiment
    from workbench.recursive import report as recursive_report
    from workbench.recursive.claims import conclusion as recursive_conclusion

    monkeypatch.setattr(recursive_experiment, "ArmClock", lambda: ArmClock(deadline=3 * 5, clock=Counter()))
    result = recursive_experiment.run_experiment(
        "smoke", progress=False, loops=(2,), inits=("stepwise", "average"), arms="no_lora", seeds=2, teacher_steps=20
    )
    table = result.table
    assert len(table) == 6 and list(table.loc[table["kind"] != "teacher", "seed"]) == [0, 0, 0, 0, 1]
    assert table.attrs["not_trained"] == [
        "B=2 stepwise (seed 1)",
        "B=2 average (seed 1)",
        "reduced depth K=3, scratch (seed 1)",
    ]
    recursive_report.summary_table(table), recursive_report.params_figure(table), recursive_report.rank_figure(table)
    full = SimpleNamespace(name="full", seeds=2)
    text = recursive_conclusion(table, result.throughput, result.thresholds, profile=full)
    assert "Stepwise beats Average without LoRA (B=2; Lower not run)" in text and deadline.NOT_TRAINED in text
    assert "time limit: 3 arms not trained" in text
