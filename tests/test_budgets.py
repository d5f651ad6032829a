"""Every full profile trains on python-code within the budgets issue 23 asks for; smoke stays on python-docs."""

import re

import pytest

from workbench import cli, data
from workbench.cpu.profile import CpuProfile
from workbench.diffusion.experiment import non_embedding_parameters
from workbench.diffusion.profile import SIZES, DiffusionProfile, non_embedding
from workbench.echoatt.profile import EchoAttProfile
from workbench.errors import WorkbenchError
from workbench.galore.profile import GaloreProfile
from workbench.models import tiny_llama
from workbench.recursive.profile import RecursiveProfile

IDEAS = (EchoAttProfile, RecursiveProfile, GaloreProfile, DiffusionProfile, CpuProfile)


@pytest.mark.parametrize("cls", IDEAS, ids=lambda c: c.__name__)
def test_full_trains_on_code_smoke_on_docs(cls):
    full, smoke = cls.resolve("full"), cls.resolve("smoke")
    assert full.corpus == data.CODE_CORPUS and smoke.corpus == data.DEFAULT_CORPUS
    assert full.allow_repeats is False and full.train_tokens_per_arm > smoke.train_tokens_per_arm > 0
    with pytest.raises(WorkbenchError, match="allow_repeats"):
        data.check_epochs(full, full.train_tokens_per_arm, full.train_tokens_per_arm // 2)
    assert data.check_epochs(cls.resolve("full", allow_repeats=True), 4, 2) == 2.0


def test_budgets_make_the_claims_testable():
    galore = GaloreProfile.resolve("full")
    assert galore.train_tokens_per_arm >= 20_000_000 and galore.seeds == 3
    assert EchoAttProfile.resolve("full").train_tokens_per_arm >= 10_000_000
    assert RecursiveProfile.resolve("full").train_tokens_per_arm >= 10_000_000
    budgets = DiffusionProfile.resolve("full").budgets
    assert max(budgets) / min(budgets) >= 16


@pytest.mark.parametrize("size", ["t1", "s", "m"])
def test_diffusion_budget_counts_the_parameters_the_model_has(size):
    model, _ = tiny_llama(vocab_size=512, seed=0, max_len=64, **SIZES[size])
    assert non_embedding(size) == non_embedding_parameters(model)
    profile = DiffusionProfile.resolve("full", sizes=(size,), budgets=(1e13,))
    steps = round(1e13 / (6 * non_embedding(size) * profile.batch_size * profile.block_len))
    assert profile.train_tokens_per_arm == max(1, steps) * profile.batch_size * profile.block_len


@pytest.mark.slow  # 5.3 s quiet: too long for test-fast's minute
def test_corpus_command_prints_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "code.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 300)
    assert cli.main(["corpus", str(text)]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    train, val = (int(n.replace(",", "")) for n in re.findall(r"([\d,]+) (?:training|held-out) tokens", line))
    assert line.startswith("code.txt:") and train > 0 and val > 0 and abs(val / (train + val) - 0.05) < 0.01


def test_full_profiles_are_found_through_the_notebooks():
    found = {notebook: type(profile) for notebook, profile in cli._full_profiles()}
    assert {found[n] for n in found if n[:2] in ("02", "03", "04", "05", "06")} == set(IDEAS)
    assert all(profile.name == "full" for _, profile in cli._full_profiles())
