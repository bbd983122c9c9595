"""What the served recommender does for a run with several sales forces (no MLflow here).

A run with ``forces:`` designs one alignment per force, so it serves one
:class:`~territory.models.recommender.RecommenderBundle` per force behind
one :class:`ForcesRecommender`. Each force's bundle scores with the force's
own potential, :class:`ForcePotential`: the sum over the force's segments
of the segment potential models (:func:`territory.models.forces.fit_segment_potential`),
and with the force's forecasts, territories and peers.

A request is the one-force recommender's (``unit_id`` plus the market
feature columns). Every answer row carries its ``force``; without a force
asked for, each unit is answered once per force (in the config's order),
with ``force`` one force's answers only. An unknown force raises
:class:`~territory.models.recommender.ScoringInputError` naming the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from territory.features.errors import shorten
from territory.models.forces import FORCE_COL, SEGMENT_CODE
from territory.models.recommender import RecommenderBundle, ScoringInputError


class ForcePotential:
    """A force's annual potential from market features: the sum of its segments' models.

    ``models`` maps each of the force's segments to ``(model, code)``: a fitted
    potential model and, for the global model with the segment as a feature,
    the segment's ``segment_code`` (None for a model of that segment alone).
    The drivers (:meth:`contributions`) of a unit are those of its largest
    segment, as in the run's scores.
    """

    def __init__(self, models: Mapping[str, tuple[object, float | None]]) -> None:
        if not models:
            raise ValueError("a force's potential needs at least one segment model")
        self.models = dict(models)
        first, code = next(iter(self.models.values()))
        names = list(first.feature_names_)
        self.feature_names_ = [c for c in names if c != SEGMENT_CODE] if code is not None \
            else names

    def _rows(self, X: pd.DataFrame, code: float | None) -> pd.DataFrame:
        rows = X[self.feature_names_]
        return rows if code is None else rows.assign(**{SEGMENT_CODE: float(code)})

    def segment_predictions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Annual potential per row (``X``'s index) and segment (columns)."""
        return pd.DataFrame({segment: model.predict(self._rows(X, code))
                             for segment, (model, code) in self.models.items()}, index=X.index)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.segment_predictions(X).sum(axis=1).to_numpy()

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row, the feature contributions of its largest segment's model."""
        largest = self.segment_predictions(X).to_numpy().argmax(axis=1)
        out = pd.DataFrame(0.0, index=X.index, columns=self.feature_names_)
        for i, (model, code) in enumerate(self.models.values()):
            mask = largest == i
            if mask.any():
                part = model.contributions(self._rows(X.loc[mask], code))
                out.loc[mask] = part[self.feature_names_].to_numpy()
        return out


@dataclass
class ForcesRecommender:
    """One recommender bundle per sales force; answers carry the ``force``."""

    bundles: dict[str, RecommenderBundle]  # in the config's order of the forces

    @property
    def unit_col(self) -> str:
        return next(iter(self.bundles.values())).unit_col

    @property
    def feature_columns(self) -> list[str]:
        """Every force's feature columns, once each, in first-seen order."""
        return list(dict.fromkeys(c for b in self.bundles.values() for c in b.feature_columns))

    def forces(self, force: str | None = None) -> list[str]:
        """The forces a request for ``force`` (None or "": every force) is answered for."""
        if force is None or force == "":
            return list(self.bundles)
        if not isinstance(force, str) or force not in self.bundles:
            known = ", ".join(self.bundles)
            raise ScoringInputError(f"unknown force {shorten(repr(force))}; this model serves "
                                    f"the forces {known} (leave force out for all of them)")
        return [force]

    def score(self, rows: pd.DataFrame, force: str | None = None) -> pd.DataFrame:
        """Each row scored for ``force``, or for every force (rows repeated per force)."""
        parts = []
        for name in self.forces(force):
            scored = self.bundles[name].score(rows)
            scored.insert(0, FORCE_COL, name)
            parts.append(scored)
        return pd.concat(parts, ignore_index=True)


@dataclass
class SegmentPotentials:
    """What a run with sales forces learned about potential, kept for later runs to score
    with: per force its :class:`ForcePotential`, and the metrics of the segment models.

    Logged in the training run beside the forecaster (see
    :func:`territory.models.tracking.log_potential_model`), so the nightly forecast and
    the scenario flow score each segment with the champion's own models, as the
    one-force flows do with its potential model. ``metrics`` are the segment models'
    (``segment_potential_*``), ``force_metrics`` each force's pooled ones
    (``potential_*``).
    """

    forces: dict[str, ForcePotential]  # in the config's order
    metrics: dict[str, float]
    force_metrics: dict[str, dict[str, float]]

    @property
    def feature_names_(self) -> list[str]:
        return list(dict.fromkeys(c for p in self.forces.values() for c in p.feature_names_))

    def segments(self) -> dict[str, list[str]]:
        """Each force's segments, in its models' order."""
        return {name: list(potential.models) for name, potential in self.forces.items()}

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The annual potential of every force together (what the logged pyfunc answers)."""
        return np.sum([p.predict(X) for p in self.forces.values()], axis=0)
