"""The search's progress bar counts what this search measured, also under --force."""

from __future__ import annotations

import os
import time

from components.search import _StoreProgress
from components.stage_cache import StageCache


def test_entries_from_before_a_forced_search_do_not_count(tmp_path):
    cache = StageCache(tmp_path / "stages")
    old, new = cache.entry("candidate", "old"), cache.entry("candidate", "new")
    old.mkdir(parents=True)
    os.utime(old, (time.time() - 60, time.time() - 60))
    keys = ["old", "new", "missing"]
    assert _StoreProgress(cache, keys, enabled=False)._count() == 1
    since = time.time()
    forced = _StoreProgress(cache, keys, enabled=False, since=since)
    assert forced._count() == 0
    time.sleep(0.05)  # file times are a little coarser than time.time()
    new.mkdir()
    assert forced._count() == 1
