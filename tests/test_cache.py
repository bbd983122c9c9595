"""Issue 13: the feature cache is pruned by age and size from config; `territory cache clear`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from territory.pipelines import cache
from territory.pipelines.cli import app
from territory.pipelines.config import load_config
from tests.conftest import FAST_MODELS, write_slice_config

DAY = 86400.0


def _entry(folder: Path, name: str, size: int, age_days: float, now: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return path


def test_prune_removes_old_entries_then_the_least_recently_used(tmp_path):
    now = time.time()
    old = _entry(tmp_path, "features-old", 10, 40, now)
    a = _entry(tmp_path, "features-a", 100, 3, now)
    b = _entry(tmp_path, "features-b", 100, 2, now)
    c = _entry(tmp_path, "features-c", 100, 1, now)
    other = _entry(tmp_path, "0a1b2c3d", 10, 400, now)  # another Prefect result: not ours
    removed = cache.prune(tmp_path, max_bytes=250, max_age_s=30 * DAY, now=now)
    assert {e.path for e in removed} == {old, a}
    assert b.exists() and c.exists() and other.exists()


def test_prune_never_removes_the_entry_in_use(tmp_path):
    now = time.time()
    used = _entry(tmp_path, "features-used", 500, 90, now)  # old and too big, but in use
    spare = _entry(tmp_path, "features-spare", 10, 1, now)
    removed = cache.prune(tmp_path, max_bytes=100, max_age_s=30 * DAY, keep=used.name,
                          now=now)
    assert [e.path for e in removed] == [spare] and used.exists()


def test_a_reuse_counts_as_a_use(tmp_path):
    now = time.time()
    first = _entry(tmp_path, "features-first", 100, 5, now)
    second = _entry(tmp_path, "features-second", 100, 1, now)
    cache.touch(tmp_path, first.name)  # a cache hit on the older build
    removed = cache.prune(tmp_path, max_bytes=150, max_age_s=30 * DAY)
    assert [e.path for e in removed] == [second] and first.exists()
    cache.touch(tmp_path, "features-missing")  # a key never written: nothing happens


def _tables(entry: Path, size: int) -> Path:
    """A Dask build's folder of training rows beside ``entry``, two files of ``size``."""
    folder = cache.tables_of(entry)
    folder.mkdir()
    for k in range(2):
        (folder / f"part-{k:04d}.feather").write_bytes(b"x" * size)
    return folder


def test_a_dask_builds_training_rows_count_and_go_with_its_entry(tmp_path):
    """The folder of a Dask build's training-row files counts in its entry's size, is
    removed with it, and is kept while the entry is in use."""
    now = time.time()
    old = _entry(tmp_path, "features-old", 10, 2, now)
    old_tables = _tables(old, 100)
    new = _entry(tmp_path, "features-new", 10, 1, now)
    new_tables = _tables(new, 100)
    assert {e.path.name: e.size for e in cache.entries(tmp_path)} == {
        "features-old": 210, "features-new": 210}  # the folders are not entries of their own
    removed = cache.prune(tmp_path, max_bytes=300, max_age_s=30 * DAY, keep=new.name, now=now)
    assert [e.path for e in removed] == [old]
    assert not old.exists() and not old_tables.exists()
    assert new.exists() and len(list(new_tables.glob("*.feather"))) == 2


def test_clear_removes_training_rows_left_without_an_entry(tmp_path):
    """A run that died after its workers wrote the rows, before Prefect stored the entry."""
    now = time.time()
    entry = _entry(tmp_path, "features-kept", 10, 1, now)
    tables = _tables(entry, 10)
    orphan = _tables(tmp_path / "features-died", 10)
    other = _entry(tmp_path, "0a1b2c3d", 10, 1, now)
    assert [e.path for e in cache.clear(tmp_path)] == [entry]
    assert not tables.exists() and not orphan.exists() and other.exists()


def test_cache_clear_empties_the_feature_cache(tmp_path, demo_slice_dir):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    storage = tmp_path / "storage"
    now = time.time()
    for name in ("features-1", "features-2"):
        _entry(storage, name, 2**20, 1, now)
    other = _entry(storage, "flow-result", 10, 1, now)
    path = write_slice_config(demo_slice_dir, tmp_path / "ws")
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        result = CliRunner().invoke(app, ["cache", "clear", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "removed 2 cached feature build(s), 2.0 MiB" in result.output
    assert not list(storage.glob("features-*")) and other.exists()


@pytest.mark.parametrize("key,value", [("max_size_gb", 0), ("max_age_days", -1)])
def test_cache_limits_must_be_positive(tmp_path, demo_slice_dir, key, value):
    from territory.features.errors import InputError

    path = write_slice_config(demo_slice_dir, tmp_path / "ws", cache={key: value})
    with pytest.raises(InputError, match=f"cache.{key}"):
        load_config(path)


def test_a_flow_prunes_the_cache_to_the_configured_size(prefect_session, demo_slice_dir,
                                                        tmp_path):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from territory.pipelines import flows, run_keys, stages

    storage = tmp_path / "storage"  # not the session's cache, which other tests reuse
    stale = _entry(storage, "features-stale-from-an-older-build", 2**20, 1, time.time())
    config = load_config(write_slice_config(
        demo_slice_dir, tmp_path / "ws", run_name="cache", **FAST_MODELS,
        cache={"max_size_gb": 1e-6, "max_age_days": 30}))  # ~1 KB: only the one in use fits
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        assert flows.feature_cache_dir() == storage
        flows.prepare_features(config)
    key = run_keys.features_cache_key(config, stages.load_inputs(config).file_hashes)
    assert (storage / key).is_file()
    assert not stale.exists()
