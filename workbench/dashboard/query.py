"""The filter expression box: `params.lr > 1e-3 and metrics.ppl < 30`, `"student" in name`, `"keep" in tags`.

Parsed with Python's own parser (`ast.parse`, mode "eval") and then *interpreted* here over a whole
table at once: only comparisons, `and`/`or`/`not`, field names and literal constants are accepted;
a call, a subscript, an attribute of anything but `params`/`metrics`, or any other node is a
one-line error. Nothing is ever passed to `eval`, so a filter cannot run code.

Fields: `params.X` (a run's parameters, nested ones dotted: `params.profile.steps`), `metrics.X`
(its final numbers), and `id`, `kind`, `name`, `sweep`, `status`, `tags`, `note`. A run that has no
value for a field never matches a comparison on it.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

import pandas as pd

from ..errors import WorkbenchError

PLAIN_FIELDS = ("id", "kind", "name", "sweep", "status", "tags", "note")
PREFIXES = ("params", "metrics")
ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
HELP = "fields: params.X, metrics.X, " + ", ".join(PLAIN_FIELDS) + "; e.g. params.lr > 1e-3 and \"seed\" in name"


@dataclass(frozen=True)
class Query:
    """A parsed filter; `mask(table)` says which rows match (`table` has one column per field used)."""

    text: str
    tree: ast.Expression

    def mask(self, table: pd.DataFrame) -> pd.Series:
        result = _evaluate(self.tree.body, table)
        if not isinstance(result, pd.Series):
            return pd.Series(bool(result), index=table.index)
        return result.fillna(False).astype(bool)


def parse(text: str) -> Query | None:
    """The query of `text` (None for an empty box); a one-line `WorkbenchError` for anything else."""
    if not text.strip():
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise WorkbenchError(f"filter: cannot read {text.strip()!r} ({error.msg}); {HELP}") from None
    for node in ast.walk(tree):
        _check(node, text)
    return Query(text.strip(), tree)


def _check(node: ast.AST, text: str) -> None:
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare,
               ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Name, ast.Attribute,
               ast.Constant, ast.List, ast.Tuple, ast.Load)
    if not isinstance(node, allowed):
        raise WorkbenchError(f"filter: {type(node).__name__.lower()} is not allowed in {text.strip()!r}; {HELP}")
    if isinstance(node, ast.Name) and node.id not in PLAIN_FIELDS + PREFIXES + ("True", "False", "None"):
        raise WorkbenchError(f"filter: unknown field {node.id!r}; {HELP}")
    if isinstance(node, ast.Attribute) and (_field(node).split(".", 1)[0] not in PREFIXES or node.attr.startswith("_")):
        raise WorkbenchError(f"filter: {_field(node)!r} is not a field; {HELP}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        if not isinstance(node.operand, ast.Constant):
            raise WorkbenchError(f"filter: a sign applies to a number only, in {text.strip()!r}")


def _field(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_field(node.value)}.{node.attr}"
    raise WorkbenchError("filter: a field is a name such as params.lr")


def _evaluate(node: ast.AST, table: pd.DataFrame):
    if isinstance(node, ast.BoolOp):
        values = [_as_mask(_evaluate(v, table), table) for v in node.values]
        result = values[0]
        for value in values[1:]:
            result = (result & value) if isinstance(node.op, ast.And) else (result | value)
        return result
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return ~_as_mask(_evaluate(node.operand, table), table)
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        result, left = None, _evaluate(node.left, table)
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node, table)
            step = _compare(op, left, right, table)
            result = step if result is None else result & step
            left = right
        return result
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _field(node)
        if name in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[name]
        return table[name] if name in table else pd.Series(None, index=table.index, dtype=object)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate(e, table) for e in node.elts]
    raise WorkbenchError(f"filter: {type(node).__name__.lower()} is not allowed")


def _as_mask(value, table: pd.DataFrame) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool)
    return pd.Series(bool(value), index=table.index)


def _compare(op: ast.cmpop, left, right, table: pd.DataFrame) -> pd.Series:
    if isinstance(op, (ast.In, ast.NotIn)):
        found = _contains(left, right, table)
        return ~found if isinstance(op, ast.NotIn) else found
    if isinstance(op, (ast.Eq, ast.NotEq)):
        equal = _equal(left, right, table)
        return ~equal & _present(left, right, table) if isinstance(op, ast.NotEq) else equal
    compare = ORDER[type(op)]
    numeric = [pd.to_numeric(v, errors="coerce") if isinstance(v, pd.Series) else v for v in (left, right)]
    if any(isinstance(v, str) for v in numeric):
        numeric = [v.astype("string") if isinstance(v, pd.Series) else v for v in (left, right)]
    try:
        result = compare(*numeric)
    except TypeError:
        raise WorkbenchError("filter: <, <=, >, >= compare numbers with numbers, or text with text") from None
    return _as_mask(result, table)


def _present(left, right, table: pd.DataFrame) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for value in (left, right):
        if isinstance(value, pd.Series):
            mask &= value.notna()
    return mask


def _equal(left, right, table: pd.DataFrame) -> pd.Series:
    if isinstance(left, pd.Series) and isinstance(right, pd.Series):
        return _as_mask(left == right, table)
    column, value = (left, right) if isinstance(left, pd.Series) else (right, left)
    if not isinstance(column, pd.Series):
        return pd.Series(column == value, index=table.index)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _as_mask(pd.to_numeric(column, errors="coerce") == value, table)
    return column.map(lambda v: v == value or (isinstance(v, (list, tuple)) and list(v) == value)).astype(bool)


def _contains(needle, haystack, table: pd.DataFrame) -> pd.Series:
    """`"x" in name` (text contains), `"keep" in tags` (list holds), `kind in ["a", "b"]` (one of)."""
    if isinstance(haystack, list):
        options = set(haystack)
        if isinstance(needle, pd.Series):
            return needle.map(lambda v: v in options if isinstance(v, (str, int, float)) else False).astype(bool)
        return pd.Series(needle in options, index=table.index)
    if not isinstance(haystack, pd.Series):
        raise WorkbenchError("filter: `in` looks inside a field (\"x\" in name) or a list (kind in [\"a\", \"b\"])")

    def holds(cell) -> bool:
        if isinstance(cell, (list, tuple)):
            return needle in cell
        return isinstance(cell, str) and isinstance(needle, str) and needle.lower() in cell.lower()

    return haystack.map(holds).astype(bool)
