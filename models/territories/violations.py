"""Violations as records, put into words only when a report is read.

The engine finds what breaks a rule as a :class:`Violation`: which rule
(``kind``), the territory (its index), the attribute, the deviation and the
tolerance. :meth:`Violation.text` turns one into a sentence with the
caller's territory names, so internal indices never reach a reader, and a
caller can filter records by what they say rather than by parsing words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("giant_unit", "unassigned", "empty", "balance", "noncontiguous", "shape", "radius",
         "lock", "lock_split", "move_budget", "region_count")


def pct_text(x: float) -> str:
    """A fraction as a percentage for messages: 0.05 -> "5%", 0.123 -> "12.3%"."""
    return f"{100 * x:.1f}%".replace(".0%", "%")


def beyond_text(x: float, tau: float) -> str:
    """``x`` as a percentage with enough digits to differ from the tolerance ``tau``."""
    for digits in (1, 2, 3, 4):
        text = f"{100 * x:.{digits}f}%"
        if text != f"{100 * tau:.{digits}f}%":
            return text.replace(".0%", "%") if digits == 1 else text
    return f"{100 * x:.6f}%"


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    ``territory`` (and ``other``) are territory indices ``0..K-1``; ``deviation``
    is the signed fraction off the target (``balance``, ``region_count``) or the
    excess of a unit alone over the largest target (``giant_unit``); ``value``
    and ``limit`` are the measure and its limit (elongation, km, a move budget).
    """

    kind: str
    territory: int | None = None
    attribute: str | None = None
    deviation: float | None = None
    tolerance: float | None = None
    unit: str | None = None
    count: int | None = None
    value: float | None = None
    limit: float | None = None
    other: int | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown violation kind {self.kind!r}; expected one of {KINDS}")

    def text(self, names: Sequence[str]) -> str:
        """This violation in words, naming territories with ``names`` (K names)."""
        name = None if self.territory is None else names[self.territory]
        tau = "" if self.tolerance is None else f"τ={pct_text(self.tolerance)}"
        side = "over" if (self.deviation or 0) > 0 else "under"
        if self.kind == "giant_unit":
            return (f"unit {self.unit} alone exceeds the {self.attribute} target by "
                    f"{pct_text(self.deviation)}: {tau} cannot be met")
        if self.kind == "unassigned":
            return f"{self.count} units are not assigned to any territory"
        if self.kind == "empty":
            return f"{name}: empty territory"
        if self.kind == "balance":
            off = beyond_text(abs(self.deviation), self.tolerance)
            return f"{name}: {self.attribute} {off} {side} target ({tau})"
        if self.kind == "noncontiguous":
            return f"{name}: not contiguous ({self.count} separate pieces)"
        if self.kind == "shape":
            return (f"{name}: elongation {self.value:.2f} over the shape limit of "
                    f"{self.limit:g} (span {self.detail} km)")
        if self.kind == "radius":
            return (f"{name}: {self.count} units farther than {self.limit:g} km from the centre "
                    f"(up to {self.value:.1f} km)")
        if self.kind == "lock":
            return f"unit {self.unit} is locked to {name} but ended in {names[self.other]}"
        if self.kind == "lock_split":
            return (f"{name}: its locked units ({self.detail}) cannot be joined into one "
                    "contiguous territory")
        if self.kind == "move_budget":
            return (f"move budget of {pct_text(self.limit)} of {self.attribute} limited the "
                    "rebalance")
        return (f"{name}: {self.count} territories, {pct_text(abs(self.deviation))} {side} "
                f"{self.value:.3g} ({tau})")  # region_count
