"""How the daemons open their SQLite state files (daemon/sqlite_files.py `connect`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.daemon.spool import Spool
from fleet.daemon.sqlite_files import CACHE_KIB, connect


@pytest.mark.parametrize(("fsync", "synchronous"), [(True, 2), (False, 1)])
def test_wal_the_asked_durability_and_a_small_page_cache(
    tmp_path: Path, fsync: bool, synchronous: int
) -> None:
    conn = connect(tmp_path / "state.sqlite", fsync=fsync)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (synchronous,)
        # Negative: KiB, not pages. SQLite's default would be -2000.
        assert conn.execute("PRAGMA cache_size").fetchone() == (-CACHE_KIB,)
    finally:
        conn.close()


def test_the_spool_opens_through_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20, fsync=False)
    try:
        assert spool._conn().execute("PRAGMA cache_size").fetchone() == (-CACHE_KIB,)
    finally:
        spool.close()
