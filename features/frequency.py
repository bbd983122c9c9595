"""What each supported data frequency means: season, default features, words.

Frequencies are pandas offset codes: ``YS`` (years), ``QS`` (quarters), ``MS``
(months) and ``W-MON`` (weeks starting Monday). Lags, windows and horizons in
the config count periods of the data's own frequency; this table gives the
defaults that fit each one and the words a report uses for them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrequencySpec:
    """One frequency: its season, default features and words.

    ``season`` is the number of periods in a year (1 for annual data, which
    has no season); ``level_window`` is the rolling window whose mean is a
    unit's recent level (a year of periods, or three years of annual data).
    """

    code: str
    period_alias: str
    season: int
    singular: str
    plural: str
    lags: tuple[int, ...]
    windows: tuple[int, ...]
    level_window: int
    horizon: int
    backtest_step: int


FREQUENCIES: dict[str, FrequencySpec] = {
    "YS": FrequencySpec("YS", "Y", 1, "year", "years", (1, 2, 3), (2, 3), 3, 3, 1),
    "QS": FrequencySpec("QS", "Q", 4, "quarter", "quarters", (1, 2, 3, 4, 8), (2, 4, 8), 4,
                        4, 1),
    "MS": FrequencySpec("MS", "M", 12, "month", "months", (1, 2, 3, 6, 12), (3, 6, 12), 12,
                        12, 3),
    "W-MON": FrequencySpec("W-MON", "W-SUN", 52, "week", "weeks", (1, 2, 4, 13, 52),
                           (4, 13, 52), 52, 13, 4),
}

#: In words, for messages: ``YS (yearly), QS (quarterly), ...``.
FREQUENCY_CHOICES = "YS (yearly), QS (quarterly), MS (monthly) or W-MON (weekly)"


def frequency_spec(code: str) -> FrequencySpec:
    """The :class:`FrequencySpec` of a pandas offset code; ``ValueError`` names the choices."""
    try:
        return FREQUENCIES[code]
    except KeyError:
        raise ValueError(f"frequency must be {FREQUENCY_CHOICES}, got {code!r}") from None


def periods_in_words(n: int, code: str) -> str:
    """``n`` periods of ``code`` as a person says it: ``"12 months"``, ``"1 year"``."""
    spec = frequency_spec(code)
    return f"{n} {spec.singular if n == 1 else spec.plural}"
