"""One exception type for user mistakes in input data or config.

Every rejected input raises :class:`InputError`. It carries the file, the
column, up to five offending rows and the rule that was broken, and renders
them as one readable message, so the CLI can print it without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_ROWS_SHOWN = 5
MAX_VALUE_SHOWN = 100  # characters of any input value that an error message echoes


def shorten(value: Any, limit: int = MAX_VALUE_SHOWN) -> str:
    """``value`` as text of at most ``limit`` characters, cut with ``…``."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class InputError(ValueError):
    """A violation of a data contract or a config rule.

    Parameters
    ----------
    source
        The file (or table name when there is no file) that holds the problem.
    rule
        What was expected, in words, e.g. ``"sales must be >= 0"``.
    column
        The offending column (or config key), if any.
    rows
        Offending row labels or short row descriptions; only the first five are shown.
    n_rows
        Total number of offending rows when ``rows`` is a sample.
    hint
        What the user should do next.
    key
        The offending config key as a dotted path (``territories.n_territories``), if any.
    """

    def __init__(
        self,
        source: str,
        rule: str,
        column: str | None = None,
        rows: Sequence[Any] | None = None,
        n_rows: int | None = None,
        hint: str | None = None,
        key: str | None = None,
    ) -> None:
        self.source = str(source)
        self.rule = rule
        self.column = column
        self.rows = list(rows) if rows is not None else []
        self.n_rows = n_rows if n_rows is not None else len(self.rows)
        self.hint = hint
        self.key = key
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.source}"]
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        if self.key is not None:
            parts.append(f"key '{self.key}'")
        head = ", ".join(parts) + f": {self.rule}"
        lines = [head]
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_ROWS_SHOWN])
            more = self.n_rows - min(len(self.rows), MAX_ROWS_SHOWN)
            suffix = f" (and {more} more)" if more > 0 else ""
            lines.append(f"  offending rows: {shown}{suffix}")
        if self.hint:
            lines.append(f"  what to do: {self.hint}")
        return "\n".join(lines)
