"""The generated conclusion flips with the numbers; the figures build from a result table."""

import pandas as pd

from workbench.recursive import report

COLUMNS = [
    "arm",
    "kind",
    "loops",
    "init",
    "lora",
    "rank",
    "seed",
    "non_emb_params",
    "zero_shot_ppl",
    "ppl",
    "tokens",
    "epochs",
]


def table(stepwise: float = 20.0, svd: tuple = (19.0, 18.0), zero: float = 21.0, scratch: float = 90.0) -> pd.DataFrame:
    rows = [
        ("full model, as loaded", "teacher", 1, "", "", 0, 0, 106e6, 15.0, 15.0, 0, 0.0),
        ("full model, continued", "continued", 1, "", "", 0, 0, 106e6, 15.0, 14.0, 1000, 2.0),
        ("B=2 stepwise", "recursive", 2, "stepwise", "", 0, 0, 53e6, 1e6, stepwise, 1000, 2.0),
        ("B=2 average", "recursive", 2, "average", "", 0, 0, 53e6, 1e7, 22.0, 1000, 2.0),
        ("B=2 lower", "recursive", 2, "lower", "", 0, 0, 53e6, 1e9, 23.0, 1000, 2.0),
        ("reduced depth K=15, scratch", "scratch", 2, "", "", 0, 0, 53e6, 5e4, scratch, 1000, 2.0),
        ("B=2 average + SVD LoRA r=8", "recursive", 2, "average", "svd", 8, 0, 55e6, 1e6, svd[0], 1000, 2.0),
        ("B=2 average + SVD LoRA r=32", "recursive", 2, "average", "svd", 32, 0, 63e6, 1e6, svd[1], 1000, 2.0),
        ("B=2 average + zero LoRA r=32", "recursive", 2, "average", "zero", 32, 0, 63e6, 1e7, zero, 1000, 2.0),
        ("B=2 stepwise (seed 1)", "recursive", 2, "stepwise", "", 0, 1, 53e6, 1e6, stepwise + 0.3, 1000, 2.0),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def throughput(gain: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"scheme": "csb", "exit_rule": "none", "speedup_vs_csb": 1.0},
            {"scheme": "cdb", "exit_rule": "oracle", "speedup_vs_csb": gain},
        ]
    )


def verdicts(frame: pd.DataFrame, speed: pd.DataFrame | None = None) -> dict[str, str]:
    return {c["claim"].split(" (")[0]: c["verdict"] for c in report.claims(frame, speed)}


def test_seed_spread_is_the_range_over_the_repeated_arm():
    spread, n_seeds = report.seed_spread(table())
    assert n_seeds == 2 and abs(spread - 0.3) < 1e-9


def test_claims_hold_on_a_table_with_the_papers_orderings():
    found = verdicts(table(), throughput(1.8))
    assert found == {
        "Stepwise is the best initialisation without LoRA": "held",
        "Recursive Stepwise beats the reduced-depth model trained from scratch": "held",
        "Average + SVD LoRA improves with rank": "held",
        "SVD initialisation beats zero initialisation": "held",
        "Depth-wise batching with": "held",
    }


def test_verdicts_flip_when_the_numbers_do():
    found = verdicts(table(stepwise=30.0, svd=(23.0, 25.0), zero=17.0, scratch=25.0), throughput(0.9))
    assert set(found.values()) == {"did not hold"}
    assert "did not hold" in report.conclusion(table(stepwise=30.0), throughput(0.9))


def test_differences_inside_the_seed_spread_are_called_noise():
    found = verdicts(table(stepwise=21.9))  # 0.1 better than Average, seed spread 0.3
    assert found["Stepwise is the best initialisation without LoRA"] == "within seed noise"


def test_conclusion_names_numbers_and_figures_build():
    frame = table()
    text = report.conclusion(frame, throughput(1.8))
    assert "20.00 vs 22.00" in text and "×1.80" in text and "2.0 epochs" in text
    assert len(report.params_figure(frame).data) == 4  # baseline, recursive, svd, zero
    assert len(report.rank_figure(frame).data) == 2
    assert list(report.summary_table(frame).columns)[0] == "arm"
    live = report.LiveCurves()
    live("B=2 stepwise", 0, {"val_ppl": 30.0})
    live("B=2 stepwise", 10, {"val_ppl": 25.0})
    assert list(live.figure.data[0].y) == [30.0, 25.0]
