"""Atomic output folders and file fingerprints.

A run writes into a hidden temporary folder beside its final place and is
moved into place only when everything is written. A failed run removes its
temporary folder and leaves the last good outputs untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from territory.features.errors import InputError
from territory.pipelines.config import RunConfig, check_safe_name


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def output_dir(config: RunConfig, kind: str, as_of, suffix: str = "") -> Path:
    """``<workspace>/<kind>/<run_name>[-suffix]-<as_of>``: one folder per as-of date.

    The name is checked again here (a config changed with ``model_copy`` skips
    validation), so no output ever lands outside ``<workspace>/<kind>``.
    """
    name = config.run_name + (f"-{suffix}" if suffix else "")
    try:
        check_safe_name(name, "run_name")
    except ValueError as exc:
        raise InputError("run_name", str(exc)) from None
    date = f"{as_of:%Y-%m-%d}" if hasattr(as_of, "strftime") else str(as_of)
    return Path(config.workspace) / kind / f"{name}-{date}"


def failure_record_path(folder: Path) -> Path:
    """``<folder>.failed.json``: what a failed or dead run of ``folder`` left to say."""
    folder = Path(folder)
    return folder.with_name(folder.name + ".failed.json")


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(final: Path, token: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``final`` only on success.

    The previous ``final`` is renamed aside first and deleted only after the
    new folder is in place, so at every instant either the old or the new
    outputs are complete. ``token`` (default: a random one) names the
    temporary folders, ``.<final>.tmp-<token>`` and ``.<final>.old-<token>``,
    so a run's recovery can find its own.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    token = token or uuid.uuid4().hex[:8]
    tmp = final.parent / f".{final.name}.tmp-{token}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{token}"
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old.exists():
            os.replace(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path that replaces ``final`` (one file) only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
