"""Profiles: one mechanism for every experiment's settings.

Each idea defines one dataclass of its settings whose defaults are its real-size ("full") run,
and names its presets as overrides of those defaults:

    @dataclass(frozen=True)
    class RecursiveProfile(Profile):
        loops: int = 2
        steps: int = 300

    RecursiveProfile.presets = {"smoke": dict(steps=4), "full": {}}
    settings = RecursiveProfile.resolve("smoke", steps=8)   # notebook parameters, CLI flags

`resolve` is the single place where a notebook's `parameters` cell, the CLI's `-p key value` and a
library call meet: a preset by name, then overrides, where None means "the preset's value". An
unknown preset or setting, or a value of the wrong type, is a one-line `WorkbenchError`.

Values are parsed once into the field's declared type (a list for `tuple[int, ...]` becomes a tuple
of ints, an int for a float a float, a dict for a nested dataclass that dataclass), element types
checked. What a field allows beyond its type is declared beside it with `setting`:

    steps: int = setting(300, low=1)
    precisions: tuple[str, ...] = setting(("float32", "int8"), choices=PRECISIONS)

and rules between fields (a rank no larger than the model's width, loops that divide the depth) in
the profile's `check()`. `resolve` checks every field, the preset's too, before anything loads or
trains; a field without a declaration is type-checked only. Errors name the field, the value and
what is allowed, on one line.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Self

from .errors import WorkbenchError

PROFILES = ("smoke", "full")  # smoke: CPU, tiny, 1-3 minutes on 2 shared cores (the tests); full: one GPU, real size


ALLOWED = "workbench.allowed"  # the dataclass field metadata key `setting` fills
BUNDLED_CORPORA = ("python-docs", "python-code")  # the corpora `workbench.data` builds without a download


@dataclasses.dataclass(frozen=True)
class Allowed:
    """What a setting allows beyond its type; for a tuple, what each of its values allows."""

    low: float | None = None  # at least
    high: float | None = None  # at most
    above: float | None = None  # strictly more than (rates, sizes in FLOPs)
    choices: tuple | None = None
    empty: bool = False  # whether a tuple may be empty

    def admits(self, value: Any) -> bool:
        try:
            return (
                (self.choices is None or value in self.choices)
                and (self.low is None or value >= self.low)
                and (self.high is None or value <= self.high)
                and (self.above is None or value > self.above)
            )
        except TypeError:
            return False

    def describe(self) -> str:
        parts = [f"one of {', '.join(map(repr, self.choices))}"] if self.choices is not None else []
        if self.low is not None and self.high is not None:
            parts.append(f"between {self.low:g} and {self.high:g}")
        else:
            parts += [f">= {self.low:g}"] if self.low is not None else []
            parts += [f"<= {self.high:g}"] if self.high is not None else []
        parts += [f"> {self.above:g}"] if self.above is not None else []
        return " and ".join(parts)

    def check(self, owner: str, key: str, value: Any) -> None:
        if isinstance(value, (tuple, list)):
            if not value and not self.empty:
                raise WorkbenchError(f"{owner}.{key} must not be empty, got {value!r}")
            if not all(self.admits(v) for v in value):
                raise WorkbenchError(f"{owner}.{key} must be {self.describe()} (each value), got {value!r}")
        elif value is not None and not self.admits(value):
            raise WorkbenchError(f"{owner}.{key} must be {self.describe()}, got {value!r}")


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    choices: Iterable | None = None,
    empty: bool = False,
) -> Any:
    """A profile field with what it allows declared beside it: `steps: int = setting(300, low=1)`."""
    allowed = Allowed(low, high, above, None if choices is None else tuple(choices), empty)
    return dataclasses.field(default=default, default_factory=factory, metadata={ALLOWED: allowed})


@dataclasses.dataclass(frozen=True)
class Profile:
    """Base of every idea's settings dataclass; `name` is the preset it was resolved from."""

    name: str = "full"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "full": {}}

    @classmethod
    def resolve(cls, profile: str | Profile = "smoke", **overrides: Any) -> Self:
        """The preset `profile` (or a profile as given) with `overrides` applied (None: keep), every
        value parsed into its field's type and every field checked (`validate`)."""
        owner, hints = cls.__name__, _hints(cls)
        if isinstance(profile, cls):
            base = profile
        elif isinstance(profile, str) and profile in cls.presets:
            preset = {key: parse(owner, key, value, hints[key]) for key, value in cls.presets[profile].items()}
            base = cls(name=profile, **preset)
        else:
            raise WorkbenchError(f"unknown profile {profile!r} for {owner}: use one of {', '.join(cls.presets)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise WorkbenchError(
                f"unknown setting(s) {', '.join(unknown)} for {owner}: known settings are {', '.join(fields)}"
            )
        given = {key: parse(owner, key, value, hints[key]) for key, value in overrides.items() if value is not None}
        settings = dataclasses.replace(base, **given)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Every field's type and declared range or choices (`setting`), then the rules between fields."""
        owner, hints = type(self).__name__, _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            parse(owner, f.name, value, hints[f.name])
            allowed = f.metadata.get(ALLOWED)
            if allowed is not None:
                allowed.check(owner, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules between fields (a subclass overrides it and raises `self.refuse(...)`); none here."""

    def refuse(self, key: str, allowed: str) -> WorkbenchError:
        """The one-line error for field `key`: what it holds and what it must be."""
        return WorkbenchError(f"{type(self).__name__}.{key} must be {allowed}, got {getattr(self, key)!r}")

    def check_corpus(self, key: str = "corpus") -> None:
        """A corpus name that can be loaded: bundled, "hf:NAME", or a file or folder that exists."""
        value = getattr(self, key)
        if value not in BUNDLED_CORPORA and not value.startswith("hf:") and not Path(value).expanduser().exists():
            names = ", ".join(map(repr, BUNDLED_CORPORA))
            raise self.refuse(key, f"{names}, 'hf:DATASET' or a text file or folder that exists")

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a run's parameters."""
        return dataclasses.asdict(self)


class _Mismatch(Exception):
    """A value that is not of the type asked for (turned into a WorkbenchError naming the field)."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse(owner: str, key: str, value: Any, hint: Any) -> Any:
    """`value` as field `key`'s declared type `hint` (lists to tuples, ints to floats, dicts to nested
    dataclasses), or a one-line error naming the field, the value and the type."""
    try:
        return _parse(value, hint)
    except _Mismatch:
        kind = type(value).__name__
        raise WorkbenchError(f"{owner}.{key} must be {type_name(hint)}, got {value!r} ({kind})") from None


def _parse(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch
    if hint in (bool, str):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float) if hint is float else int):
            raise _Mismatch
        if hint is float and not math.isfinite(value):
            raise _Mismatch
        return hint(value)
    if tuple in (hint, origin) or list in (hint, origin):
        kind = tuple if tuple in (hint, origin) else list
        variadic = len(args) == 2 and args[1] is Ellipsis or kind is list and len(args) == 1
        if variadic and not isinstance(value, (tuple, list)):
            return kind([_parse(value, args[0])])  # one value for a tuple of them: `-p threads 4`
        if not isinstance(value, (tuple, list)):
            raise _Mismatch
        if not args:
            return kind(value)
        if variadic:
            return kind(_parse(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return kind(_parse(v, arg) for v, arg in zip(value, args))
    if dict in (hint, origin):
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict) or set(value) - {f.name for f in dataclasses.fields(hint)}:
            raise _Mismatch
        hints = _hints(hint)
        return hint(**{key: _parse(v, hints[key]) for key, v in value.items()})
    return value  # a type we do not check (callables, Any)


def type_name(hint: Any) -> str:
    """A declared type in words: "int", "tuple of int", "float or None", "tuple (int, int)"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if arg is type(None) else type_name(arg) for arg in args)
    if origin in (tuple, list) and args:
        if len(args) == 2 and args[1] is Ellipsis or origin is list:
            return f"{origin.__name__} of {type_name(args[0])}"
        return f"tuple ({', '.join(type_name(arg) for arg in args)})"
    return getattr(origin or hint, "__name__", str(hint))
