"""The daemons' SQLite state files at start: checked, and a broken one replaced without a crash.

The spool, the agent's outbox and the alert state are SQLite files that a power
cut on a cheap SD card, a full disk or a stray `dd` can break. A broken file must
neither stop the process (systemd would restart it into the same error forever)
nor be thrown away (it may hold readings nobody else has). So, before a file is
used:

1. it is checked read-only (`PRAGMA quick_check`: every page and b-tree is
   walked, which catches torn pages and overwritten headers; it skips the
   index-versus-table comparison of `integrity_check`, which these files do not
   need and which would make a start with a big spool slow);
2. if broken, every row that still reads back is copied, table by table and in
   rowid order, into a new file beside it (rows on unreadable pages are stepped
   over: the copy probes forward rowid by rowid until the b-tree answers again);
3. the broken file and its -wal/-shm are renamed to `<name>.corrupt-<UTC stamp>`
   for a person to look at, and the new file takes the old name.

The copy is made before anything is renamed: if it fails (the disk is full),
nothing has moved and the next start tries again. SQLite's `.recover` (which
also reads pages the b-tree no longer reaches) is a feature of the command-line
shell, not of the library; a person can run it on the file kept aside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LOG = logging.getLogger(__name__)

_COMPANIONS = ("-wal", "-shm", "-journal")
_BATCH = 500  # rows read and written per step of the copy
# Rowids probed one by one past an unreadable page before the probe strides grow
# (bounds the time a damaged interior page spanning millions of rowids can take).
_LINEAR_PROBES = 100_000
_MAX_ROWID = 2**63 - 1
# Each connection's page cache (SQLite's default is 2 MiB, filled as pages are touched; the
# collector holds several: the spool's, one per thread, the dead letters', the alert state's,
# the sign-out sheet's). Spool rows are written and read once, in order: the kernel's page
# cache serves what a small cache misses. 256 KiB rather than the default took the
# collector's steady RSS at 1,000 msg/s from 60.8-61.9 to 59.5-59.9 MB (README, Performance).
CACHE_KIB = 256


@dataclass(frozen=True, slots=True)
class Recovery:
    """What was done about a broken state file."""

    path: Path
    problem: str  # what SQLite said about it
    moved_to: Path  # where the broken file (and its -wal/-shm) now is
    salvaged: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    unreadable: list[str] = field(default_factory=list)  # what could not be read back

    @property
    def rows(self) -> int:
        return sum(n for table, n in self.salvaged.items() if not table.startswith("sqlite_"))

    def summary(self) -> str:
        tables = ", ".join(
            f"{t} {n}" for t, n in self.salvaged.items() if not t.startswith("sqlite_")
        )
        kept = f"{self.rows} readable rows copied to the new file ({tables or 'no tables'})"
        lost = f"; unreadable: {'; '.join(self.unreadable)}" if self.unreadable else ""
        return (
            f"SQLite file {self.path} is broken (SQLite: {self.problem}); moved it to "
            f"{self.moved_to} and started a new one; {kept}{lost}"
        )


def connect(
    path: Path, *, fsync: bool, timeout: float = 30.0, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection to one of our state files: autocommit, WAL (readers never block the
    writer), with `fsync` FULL synchronous, so a commit survives a power cut, not only
    a crash of this process, and a page cache of `CACHE_KIB`."""
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=timeout, check_same_thread=check_same_thread
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


def open_checked(path: Path, *, clock: Callable[[], float] = time.time) -> Recovery | None:
    """Make sure `path` is a sound SQLite file (or absent) before it is opened.

    Returns None if it was fine, else what was done (also logged, CRITICAL).
    Raises sqlite3.Error / OSError only if the replacement could not be written;
    the broken file then stays where it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    problem = check(path)
    if problem is None:
        return None
    fresh = path.with_name(path.name + ".salvage")
    _remove_with_companions(fresh)
    try:
        salvaged, unreadable = _salvage(path, fresh)
    except BaseException:
        _remove_with_companions(fresh)
        raise
    moved_to = _move_aside(path, clock())
    if fresh.exists():  # else nothing was readable: the caller starts an empty file
        os.replace(fresh, path)
    _fsync_dir(path.parent)
    recovery = Recovery(path, problem, moved_to, salvaged, unreadable)
    _LOG.critical("%s", recovery.summary())
    return recovery


def check(path: Path) -> str | None:
    """What is wrong with the SQLite file at `path`, or None (also for no file at all)."""
    if not path.exists():
        return None
    wal = Path(f"{path}-wal")
    if path.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        # SQLite writes the header when it sets WAL mode, right after creating a
        # file: an empty one was truncated by something else, and what it held is gone.
        return "the file is empty (0 bytes)"
    try:
        with contextlib.closing(_read_only(path)) as conn:
            found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)")]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if found == ["ok"]:
        return None
    return "; ".join(found)[:500]


def _read_only(path: Path) -> sqlite3.Connection:
    # Read-only: neither the check nor the salvage may write into the broken file
    # (a checkpoint could carry the damage further, and a person wants it as it was).
    uri = f"file:{_uri_path(path)}?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)


def _uri_path(path: Path) -> str:
    return str(path.resolve()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _salvage(broken: Path, fresh: Path) -> tuple[dict[str, int], list[str]]:
    """Copy what reads back of `broken` into the new file `fresh`; (rows per table, losses)."""
    if broken.stat().st_size == 0:
        return {}, ["the file was empty"]
    schema, problem = _schema(broken)
    if schema is not None:
        return _copy_all(broken, schema, fresh)
    with _rebuilt_header(broken) as patched:
        if patched is not None:
            schema, _ = _schema(patched)
            assert schema is not None
            salvaged, unreadable = _copy_all(patched, schema, fresh)
            note = f"its header ({problem}): read through a rebuilt header, without the -wal"
            return salvaged, [note, *unreadable]
    return {}, [f"its table list: {problem}"]


Schema = list[tuple[str, str, str]]


def _schema(path: Path) -> tuple[Schema | None, str]:
    try:
        with contextlib.closing(_read_only(path)) as conn:
            rows = conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            ).fetchall()
    except sqlite3.DatabaseError as exc:
        return None, str(exc)
    return [(str(t), str(n), str(q)) for t, n, q in rows], ""


def _copy_all(broken: Path, schema: Schema, fresh: Path) -> tuple[dict[str, int], list[str]]:
    salvaged: dict[str, int] = {}
    unreadable: list[str] = []
    dst = sqlite3.connect(fresh, isolation_level=None)
    src = _read_only(broken)
    try:
        dst.execute("BEGIN")
        for kind, name, sql in schema:
            if kind == "table" and not name.startswith("sqlite_"):
                dst.execute(sql)
                salvaged[name], problem = _copy_table(src, dst, name)
                if problem:
                    unreadable.append(f"{name}: {problem}")
        _copy_sequence(src, dst, salvaged, unreadable)
        for kind, _name, sql in schema:
            if kind == "index":
                dst.execute(sql)
        dst.execute("COMMIT")
    finally:
        src.close()
        dst.close()
    return salvaged, unreadable


@contextlib.contextmanager
def _rebuilt_header(broken: Path) -> Iterator[Path | None]:
    """A scratch copy of `broken` with a plausible header, if one makes its tables readable.

    Overwritten first bytes ("file is not a database") leave the pages behind them
    intact; only the page size has to be guessed, and the schema tells if it was right.
    """
    scratch = broken.with_name(broken.name + ".salvage-src")
    size = broken.stat().st_size
    try:
        shutil.copyfile(broken, scratch)
        with scratch.open("r+b") as f:
            for page_size in _PAGE_SIZES:
                if size % page_size or size < 2 * page_size:
                    continue
                f.seek(0)
                f.write(_header(page_size, size // page_size))
                f.flush()
                schema, _ = _schema(scratch)
                if schema and any(kind == "table" for kind, _, _ in schema):
                    break
            else:
                yield None
                return
        yield scratch
    except OSError as exc:
        _LOG.warning("could not make a scratch copy of %s to read it: %s", broken, exc)
        yield None
    finally:
        _remove_with_companions(scratch)


_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


def _header(page_size: int, pages: int) -> bytes:
    """A database header (https://sqlite.org/fileformat2.html#the_database_header)."""
    h = bytearray(100)
    h[0:16] = b"SQLite format 3\x00"
    h[16:18] = (1 if page_size == 65536 else page_size).to_bytes(2, "big")
    h[18] = h[19] = 1  # rollback journal: the scratch copy has no -wal
    h[21:24] = bytes((64, 32, 32))  # payload fractions, fixed by the format
    h[24:28] = (1).to_bytes(4, "big")  # change counter, equal to version-valid-for (92):
    h[92:96] = (1).to_bytes(4, "big")  # so the size in pages below is believed
    h[28:32] = pages.to_bytes(4, "big")
    h[44:48] = (4).to_bytes(4, "big")  # schema format 4
    h[56:60] = (1).to_bytes(4, "big")  # UTF-8, what the daemons' files use
    major, minor, patch = sqlite3.sqlite_version_info
    h[96:100] = (major * 1_000_000 + minor * 1000 + patch).to_bytes(4, "big")
    return bytes(h)


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> tuple[int, str]:
    """Copy every row of `table` that reads back, in rowid order; (rows, what was skipped)."""
    quoted = '"' + table.replace('"', '""') + '"'
    try:
        columns = [str(row[1]) for row in src.execute(f"PRAGMA table_info({quoted})")]
    except sqlite3.DatabaseError as exc:
        return 0, f"its columns: {exc}"
    # Names come from the file's own schema, quoted as identifiers; values are bound.
    names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    marks = ", ".join("?" * (len(columns) + 1))
    select = f"SELECT rowid, {names} FROM {quoted} WHERE rowid >= ? ORDER BY rowid"  # noqa: S608
    insert = f"INSERT INTO {quoted} (rowid, {names}) VALUES ({marks})"  # noqa: S608
    copied = 0
    skipped: list[str] = []
    start = -_MAX_ROWID - 1
    while True:
        rows, error = _read_from(src, select, start)
        if rows:
            dst.executemany(insert, rows)
            copied += len(rows)
            start = int(rows[-1][0]) + 1
        if error is None:
            if not rows:
                break
            continue
        # sqlite3 reads one row ahead: the row after the last one returned may be
        # sound although stepping past it failed, so the probe starts right there.
        row, probes = _next_row(src, select, start)
        if probes:
            upto = "on" if row is None else f"to {int(row[0]) - 1}"
            skipped.append(f"rows from rowid {start} {upto} ({error})")
        if row is None:
            break
        dst.execute(insert, row)
        copied += 1
        start = int(row[0]) + 1
    return copied, "; ".join(skipped)[:1000]


def _read_from(
    src: sqlite3.Connection, select: str, start: int
) -> tuple[list[tuple[Any, ...]], str | None]:
    """Up to a batch of rows from rowid `start` on, and the error that stopped the reading."""
    rows: list[tuple[Any, ...]] = []
    try:
        cursor = src.execute(select, (start,))
        while len(rows) < _BATCH:
            row = cursor.fetchone()
            if row is None:
                break
            rows.append(tuple(row))
        cursor.close()
    except sqlite3.DatabaseError as exc:
        return rows, str(exc)
    return rows, None


def _next_row(
    src: sqlite3.Connection, select: str, start: int
) -> tuple[tuple[Any, ...] | None, int]:
    """The first row from rowid `start` on that reads back (None: none left), and how many
    rowids were given up on before it."""
    probe = select + " LIMIT 1"
    step, probes = 1, 0
    while start <= _MAX_ROWID:
        try:
            found = src.execute(probe, (start,)).fetchone()
        except sqlite3.DatabaseError:
            probes += 1
            if probes > _LINEAR_PROBES:
                step *= 2
            start += step
            continue
        return (None if found is None else tuple(found)), probes
    return None, probes


def _copy_sequence(
    src: sqlite3.Connection,
    dst: sqlite3.Connection,
    salvaged: dict[str, int],
    unreadable: list[str],
) -> None:
    """Keep AUTOINCREMENT counters where they were: ids are never handed out twice."""
    has_sequence = dst.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
    ).fetchone()
    if not has_sequence:
        return
    try:
        rows = src.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    except sqlite3.DatabaseError as exc:
        unreadable.append(f"sqlite_sequence: {exc}")
        return
    for name, seq in rows:
        updated = dst.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (seq, name)
        ).rowcount
        if not updated:
            dst.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
    salvaged["sqlite_sequence"] = len(rows)


def _move_aside(path: Path, now_s: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_s))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{target}{s}").exists() for s in ("", *_COMPANIONS)):
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    # The -wal holds committed transactions the main file has not taken in yet:
    # it goes with it (same stem, so SQLite pairs them again when a person opens it).
    for suffix in _COMPANIONS:
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    os.replace(path, target)
    return target


def _remove_with_companions(path: Path) -> None:
    for suffix in ("", *_COMPANIONS):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _fsync_dir(directory: Path) -> None:
    # The renames must survive a power cut too, or the next start finds the broken file again.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
