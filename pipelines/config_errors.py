"""Config validation errors in plain words: the key, what was expected, what was given.

Pydantic's own messages name union branches (``n_territories.constrained-int``),
error types and a docs URL. :func:`describe_errors` turns its error records
into :class:`ConfigProblem` records, one per key (the branches of a union
merged into one "expected ... or ..."), and :func:`problem_text` words one.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from territory.features.errors import shorten

_EXPECTED = {
    "int_parsing": "a whole number", "int_type": "a whole number",
    "int_from_float": "a whole number", "float_parsing": "a number", "float_type": "a number",
    "bool_parsing": "true or false", "bool_type": "true or false", "string_type": "text",
    "list_type": "a list", "set_type": "a list", "tuple_type": "a list",
    "dict_type": "a mapping of keys to values", "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values", "path_type": "a file path",
    "date_parsing": "a date (YYYY-MM-DD)", "date_type": "a date (YYYY-MM-DD)",
    "none_required": "null",
}
_COMPARISONS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
                "less_than_equal": ("le", "<="), "less_than": ("lt", "<"),
                "multiple_of": ("multiple_of", "a multiple of")}


@dataclass(frozen=True)
class ConfigProblem:
    """One key the config got wrong."""

    key: str  # dotted path, e.g. ``territories.n_territories``; "" for the whole config
    expected: str  # what a valid value looks like, or a validator's rule in its own words
    given: str | None  # the given value in words; None when the rule already quotes it
    kind: str = "value"  # "value", "rule" (a validator's message) or "unknown" (no such key)


def _given(value: Any) -> str:
    """A given value as the YAML reader would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    return shorten(repr(value) if isinstance(value, str) else value)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``Model | None``, ``list[Model]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _walk(loc: tuple, model: type[BaseModel], unknown_last: bool) -> tuple[str, str, str]:
    """(dotted key, union branch tag, the fields allowed at the last model level)."""
    parts: list[str] = []
    tag, current, allowed = "", model, ""
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
            continue
        fields = current.model_fields if current is not None else {}
        if item in fields:
            parts.append(item)
            current = _model_in(fields[item].annotation)
        elif unknown_last and i == len(loc) - 1:
            parts.append(item)
            allowed = ", ".join(fields)
        else:  # a union branch such as 'constrained-int' or "literal['auto']"
            tag = str(item)
    return ".".join(parts), tag, allowed


def _expected(err: dict, tag: str) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("literal_error", "enum"):
        return str(ctx.get("expected", "one of the listed values"))
    if kind in _COMPARISONS:
        name, words = _COMPARISONS[kind]
        number = "a whole number" if "int" in tag else "a number"
        return f"{number} {words} {ctx.get(name)}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return f"{'at least' if kind == 'too_short' else 'at most'} {bound} item(s)"
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    return str(err.get("msg", "a valid value")).removeprefix("Input should be ")


def describe_errors(errors: list[dict], model: type[BaseModel]) -> list[ConfigProblem]:
    """One :class:`ConfigProblem` per key, in pydantic's order, from ``exc.errors()``."""
    merged: dict[str, tuple[list[str], dict]] = {}
    unknown: dict[str, str] = {}
    for err in errors:
        is_unknown = err["type"] == "extra_forbidden"
        key, tag, allowed = _walk(tuple(err["loc"]), model, is_unknown)
        if is_unknown:
            unknown[key] = allowed
        expected = _expected(err, tag)
        wanted, _ = merged.setdefault(key, ([], err))
        if expected not in wanted:
            wanted.append(expected)
    problems = []
    for key, (wanted, err) in merged.items():
        if key in unknown:
            name = key.rsplit(".", 1)[-1]
            close = difflib.get_close_matches(name, unknown[key].split(", "), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(ConfigProblem(key, f"{hint}allowed here: {unknown[key]}", None,
                                          "unknown"))
            continue
        value, kind = err.get("input"), err["type"]
        if kind == "missing":
            problems.append(ConfigProblem(key, "this key is required", None, "rule"))
            continue
        given = None if isinstance(value, dict) and kind != "model_type" else _given(value)
        rule = kind in ("value_error", "assertion_error") and len(wanted) == 1
        if rule and given is not None and given in wanted[0]:
            given = None  # the validator's message already quotes it
        problems.append(ConfigProblem(key, " or ".join(wanted), given,
                                      "rule" if rule else "value"))
    return problems


def problem_text(problem: ConfigProblem) -> str:
    """One problem in words, for :class:`territory.features.errors.InputError`'s rule."""
    if problem.kind == "unknown":
        return f"unknown key; {problem.expected}"
    if problem.kind == "rule":
        return problem.expected + (f" (got {problem.given})" if problem.given else "")
    return f"expected {problem.expected}" + (f", got {problem.given}" if problem.given else "")


