"""The training rows of a feature set: in its ``train_table``, or in its files.

A feature set built by the Dask runner inside a flow keeps its training rows
in one file per partition of units (``FeatureSet.train_files``, written by
the workers beside the feature cache entry) and a ``train_table`` without
rows: the rows never come to the driver, and the cached set stays small.
What needs the rows on the driver reads them here: a local training run on
such a set (:func:`with_train_rows`), or the drift reference, which needs
only one horizon's rows of a few columns (:func:`train_rows`).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from territory.features.feature_set import FeatureSet
from territory.features.partitioned import whole_table_order


def train_rows(features: FeatureSet, unit_col: str, columns: list[str] | None = None,
               horizon: int | None = None) -> pd.DataFrame:
    """The training table (``columns`` of it; with ``horizon``, only its rows of that
    horizon), in the whole-table build's order, from ``train_table`` or from the files
    of a Dask-built feature set (``train_files``, read one at a time)."""
    if features.train_files is None:
        table = features.train_table
        table = table if horizon is None else table[table["horizon"] == horizon]
        return table if columns is None else table[columns]
    keep = None if columns is None else list(dict.fromkeys([*columns, "horizon", "origin",
                                                            unit_col]))
    pieces = []
    for part in features.train_files:
        piece = pd.read_feather(part.path, columns=keep)
        pieces.append(piece if horizon is None else piece[piece["horizon"] == horizon])
        del piece
    table = whole_table_order(pd.concat(pieces, ignore_index=True), unit_col)
    return table if columns is None else table[columns]


def with_train_rows(features: FeatureSet, unit_col: str) -> FeatureSet:
    """``features`` with its training rows in ``train_table`` (read from its files)."""
    if features.train_files is None:
        return features
    return replace(features, train_table=train_rows(features, unit_col), train_files=None)


def min_horizon(features: FeatureSet) -> int:
    """The smallest horizon of the training rows (read column by column from the files)."""
    if features.train_files is None:
        return int(features.train_table["horizon"].min())
    return int(min(pd.read_feather(part.path, columns=["horizon"])["horizon"].min()
                   for part in features.train_files))
