"""The feature cache on disk: pruned by age and size, emptied on request.

Each feature build is kept as one file ``features-<key>`` in Prefect's
result storage (see :class:`territory.pipelines.flows.InputFilesAndConfig`).
A 42k-unit build is several GB, and Prefect never deletes them. After
every build, :func:`prune` removes the entries older than
``cache.max_age_days`` and then the least recently used ones until the
rest fit in ``cache.max_size_gb``; the entry the run just used is always
kept (a reuse counts as a use: :func:`touch`). ``territory cache clear``
empties it (:func:`clear`). Other files in that storage are never touched.

A build by the Dask runner keeps its training rows beside its entry, in the
folder ``features-<key>.tables`` (one file per partition of units); it counts
in the entry's size and goes with it. Such a folder without its entry (a run
that died before Prefect stored the entry) is removed by :func:`clear`.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

PATTERN = "features-*"
TABLES = ".tables"  # suffix of the folder of a Dask build's training rows
GIB = 2**30


@dataclass(frozen=True)
class Entry:
    """One cached feature build."""

    path: Path
    size: int
    used: float  # modification time: when it was built or last reused


def entries(folder: Path) -> list[Entry]:
    """The cached feature builds in ``folder``, least recently used first."""
    found = []
    for path in Path(folder).glob(PATTERN):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed meanwhile
            continue
        if path.is_file():
            found.append(Entry(path, stat.st_size + _folder_size(tables_of(path)),
                               stat.st_mtime))
    return sorted(found, key=lambda e: (e.used, e.path.name))


def tables_of(path: Path) -> Path:
    """The folder of a Dask build's training rows, beside its entry ``path``."""
    return path.with_name(path.name + TABLES)


def _folder_size(folder: Path) -> int:
    total = 0
    for file in folder.glob("*") if folder.is_dir() else ():
        try:
            total += file.stat().st_size
        except FileNotFoundError:
            continue
    return total


def _remove(entry: Entry) -> None:
    entry.path.unlink(missing_ok=True)
    shutil.rmtree(tables_of(entry.path), ignore_errors=True)


def touch(folder: Path, key: str) -> None:
    """Mark entry ``key`` as just used (a cache hit), so pruning keeps it longest."""
    path = Path(folder) / key
    if path.is_file():
        os.utime(path)


def prune(folder: Path, max_bytes: float, max_age_s: float, keep: str | None = None,
          now: float | None = None) -> list[Entry]:
    """Remove entries older than ``max_age_s``, then the least recently used past
    ``max_bytes`` in all; never ``keep``. Returns the removed entries."""
    now = time.time() if now is None else now
    removed, kept = [], []
    for entry in entries(folder):
        if entry.path.name != keep and now - entry.used > max_age_s:
            removed.append(entry)
        else:
            kept.append(entry)
    total = sum(e.size for e in kept)
    for entry in list(kept):  # least recently used first
        if total <= max_bytes:
            break
        if entry.path.name == keep:
            continue
        removed.append(entry)
        total -= entry.size
    for entry in removed:
        _remove(entry)
    return removed


def clear(folder: Path) -> list[Entry]:
    """Remove every cached feature build in ``folder``; returns what was removed."""
    found = entries(folder)
    for entry in found:
        _remove(entry)
    for tables in Path(folder).glob(PATTERN + TABLES):  # a dead run's, without an entry
        shutil.rmtree(tables, ignore_errors=True)
    return found
