"""Every field of every profile, table-driven: a valid value (the preset's, given as a list where the
field is a tuple: the form `-p` and papermill deliver), a value of the wrong type, and, where the
field declares what it allows (`profiles.setting`), a value outside it. Each bad value must be a
one-line WorkbenchError naming the field, raised by `resolve` before anything loads.
"""

import dataclasses
import typing

import pytest

from workbench.attention.profile import AttentionLabProfile
from workbench.cpu.profile import CpuProfile
from workbench.diffusion.profile import DiffusionProfile
from workbench.echoatt.profile import EchoAttProfile
from workbench.errors import WorkbenchError
from workbench.galore.profile import GaloreProfile
from workbench.profiles import ALLOWED, Allowed, Profile, setting
from workbench.recursive.profile import RecursiveProfile
from workbench.tour import TourProfile

PROFILES = [TourProfile, AttentionLabProfile, EchoAttProfile, RecursiveProfile, GaloreProfile, DiffusionProfile,
            CpuProfile]


def as_given(value):
    """A value as the command line and papermill hand it over: tuples as lists, dataclasses as dicts."""
    if isinstance(value, tuple):
        return [as_given(v) for v in value]
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


def outside(allowed: Allowed):
    """A value the declaration refuses."""
    if allowed.choices is not None:
        return "no-such-choice" if all(isinstance(c, str) for c in allowed.choices) else -12345
    if allowed.low is not None:
        return allowed.low - 1
    if allowed.high is not None:
        return allowed.high + 1
    return allowed.above


def shaped(hint, value):
    """`value` in the shape of field type `hint`: alone, or as every element of a tuple."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    inner = args[0] if typing.get_origin(hint) in (typing.Union, type(int | None)) and len(args) == 1 else hint
    if typing.get_origin(inner) is tuple:
        length = 1 if typing.get_args(inner)[1:] == (Ellipsis,) else len(typing.get_args(inner))
        return [value] * length
    return value


def refused(cls, preset, field, value) -> str | None:
    """None if resolve refused `value` for `field` with a one-line error naming it, else what went wrong."""
    try:
        cls.resolve(preset, **{field: value})
    except WorkbenchError as error:
        message = str(error)
        if f"{cls.__name__}.{field}" not in message or "\n" in message:
            return f"{field}={value!r}: {message}"
        return None
    return f"{field}={value!r} was accepted"


@pytest.mark.parametrize("cls", PROFILES, ids=lambda cls: cls.__name__)
def test_every_field_valid_wrong_type_and_out_of_range(cls):
    hints = typing.get_type_hints(cls)
    problems, ranged = [], 0
    for preset in cls.presets:
        base = cls.resolve(preset)
        for field in dataclasses.fields(cls):
            if field.name == "name":
                continue
            value = getattr(base, field.name)
            if value is not None:
                again = cls.resolve(preset, **{field.name: as_given(value)})  # valid, in the delivered form
                if getattr(again, field.name) != value or type(getattr(again, field.name)) is not type(value):
                    problems.append(f"{preset}: {field.name}={as_given(value)!r} became {getattr(again, field.name)!r}")
            problems.append(refused(cls, preset, field.name, 1j))  # a type no field takes
            allowed = field.metadata.get(ALLOWED)
            if allowed is not None:
                ranged += preset == "full"
                problems.append(refused(cls, preset, field.name, shaped(hints[field.name], outside(allowed))))
    assert not [p for p in problems if p], [p for p in problems if p]
    assert ranged >= len(dataclasses.fields(cls)) // 3, "most settings should declare what they allow"


def test_values_are_parsed_into_the_declared_types():
    settings = RecursiveProfile.resolve("smoke", loops=[2], ranks=(4,), lr=1, thresholds=[0, 1])
    assert settings.loops == (2,) and settings.ranks == (4,) and settings.thresholds == (0.0, 1.0)
    assert type(settings.lr) is float and type(settings.thresholds[0]) is float
    assert GaloreProfile.resolve("smoke", adamw_lrs=0.001).adamw_lrs == (0.001,)  # one value for a tuple
    assert CpuProfile.resolve("smoke", threads=4).threads == (4,)
    assert AttentionLabProfile.resolve("smoke", layer_pair=[2, 3]).layer_pair == (2, 3)
    distill = EchoAttProfile.resolve("smoke", distill={"temperature": 2, "alpha": 0.5, "beta": 0.5, "gamma": 1.0})
    assert distill.distill.temperature == 2.0  # a nested dataclass from a dict, its fields typed too
    with pytest.raises(WorkbenchError, match=r"RecursiveProfile.loops must be tuple of int, got '\(2,\)' \(str\)"):
        RecursiveProfile.resolve("smoke", loops="(2,)")  # a string is not parsed a second time
    with pytest.raises(WorkbenchError, match=r"AttentionLabProfile.layer_pair must be tuple \(int, int\)"):
        AttentionLabProfile.resolve("smoke", layer_pair=[1, 2, 3])
    with pytest.raises(WorkbenchError, match="EchoAttProfile.distill must be DistillConfig"):
        EchoAttProfile.resolve("smoke", distill={"temperature": "hot"})
    with pytest.raises(WorkbenchError, match="must be float"):
        RecursiveProfile.resolve("smoke", lr=float("nan"))


def test_rules_between_fields_name_the_model():
    cases = [
        (lambda: RecursiveProfile.resolve("full", loops=(2, 4)), "30 layers cannot be looped 4 times"),
        (lambda: RecursiveProfile.resolve("smoke", loops=(4,)), "6 layers cannot be looped 4 times"),
        (lambda: RecursiveProfile.resolve("full", ranks=[100000]), "RecursiveProfile.ranks must be <= 576"),
        (lambda: GaloreProfile.resolve("full", rank=100000), "GaloreProfile.rank must be <= 512 (the 47m model's"),
        (lambda: GaloreProfile.resolve("full", ft_rank=1000), "GaloreProfile.ft_rank must be <= 576"),
        (lambda: GaloreProfile.resolve("full", size="huge"), "GaloreProfile.size must be one of"),
        (lambda: TourProfile.resolve("smoke", layer=99), "TourProfile.layer must be below 30"),
        (lambda: TourProfile.resolve("smoke", corpus="no/such/file.txt"), "TourProfile.corpus must be"),
        (lambda: AttentionLabProfile.resolve("smoke", layer_pair=(3, 3)), "two different layers"),
        (lambda: AttentionLabProfile.resolve("smoke", head=9), "AttentionLabProfile.head must be -1 or a head below 9"),
        (lambda: EchoAttProfile.resolve("full", budgets=(20,)), "EchoAttProfile.budgets must be counts of shared"),
        (lambda: EchoAttProfile.resolve("full", eligible=(5, 40)), "EchoAttProfile.eligible must be (first, last)"),
        (lambda: CpuProfile.resolve("smoke", gqa_kv_heads=(3,)), "CpuProfile.gqa_kv_heads must be divisors"),
        (lambda: DiffusionProfile.resolve("smoke", timing_batches=(64,)), "at most n_prompts"),
        (lambda: DiffusionProfile.resolve("smoke", gen_len=64), "DiffusionProfile.gen_len must be at most"),
    ]
    for call, words in cases:
        with pytest.raises(WorkbenchError) as raised:
            call()
        assert words in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert TourProfile.resolve("smoke", model_name="someone/other-model", layer=99).layer == 99  # unknown depth


def test_a_field_without_a_declaration_is_type_checked_only():
    @dataclasses.dataclass(frozen=True)
    class Newer(Profile):
        steps: int = setting(3, low=1)
        budget_note: str = "added later by someone else"
        extra: tuple[int, ...] = ()

    Newer.presets = {"smoke": {}, "full": {}}
    assert Newer.resolve("smoke", extra=[-5], budget_note="x").extra == (-5,)
    with pytest.raises(WorkbenchError, match="Newer.extra must be tuple of int"):
        Newer.resolve("smoke", extra=["a"])
    with pytest.raises(WorkbenchError, match="Newer.steps must be >= 1, got 0"):
        Newer.resolve("smoke", steps=0)
