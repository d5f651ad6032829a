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
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, Self

from .errors import WorkbenchError

PROFILES = ("smoke", "full")  # smoke: CPU, tiny, about a minute (the tests); full: one GPU, real size


@dataclasses.dataclass(frozen=True)
class Profile:
    """Base of every idea's settings dataclass; `name` is the preset it was resolved from."""

    name: str = "full"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "full": {}}

    @classmethod
    def resolve(cls, profile: str | Profile = "smoke", **overrides: Any) -> Self:
        """The preset `profile` (or a profile as given) with `overrides` applied (None: keep)."""
        if isinstance(profile, cls):
            base = profile
        elif isinstance(profile, str) and profile in cls.presets:
            base = cls(name=profile, **cls.presets[profile])
        else:
            raise WorkbenchError(f"unknown profile {profile!r} for {cls.__name__}: use one of {', '.join(cls.presets)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise WorkbenchError(
                f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}: known settings are {', '.join(fields)}"
            )
        given = {key: value for key, value in overrides.items() if value is not None}
        hints = typing.get_type_hints(cls)
        for key, value in given.items():
            _check_type(cls.__name__, key, value, hints[key])
        return dataclasses.replace(base, **given)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a run's parameters."""
        return dataclasses.asdict(self)


def _check_type(owner: str, key: str, value: Any, hint: Any) -> None:
    """Reject a value whose type cannot be the field's (e.g. "ten" for steps: int)."""
    allowed = _plain_types(hint)
    if allowed is None:
        return  # a type we do not check (nested dataclasses, callables)
    if isinstance(value, bool) and bool not in allowed:
        ok = False
    else:
        ok = isinstance(value, allowed) or (float in allowed and isinstance(value, int))
    if not ok:
        names = " or ".join(t.__name__ for t in allowed)
        raise WorkbenchError(f"{owner}.{key} must be {names}, got {value!r} ({type(value).__name__})")


def _plain_types(hint: Any) -> tuple[type, ...] | None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_plain_types(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        if any(part is None for part in parts):
            return None
        return tuple(t for part in parts for t in part)
    if origin is not None:
        return (origin,) if origin in (tuple, list, dict) else None
    return (hint,) if hint in (int, float, str, bool) else None
