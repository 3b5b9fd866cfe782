"""The local device-registry backend: content-addressed bundle folders plus a SQLite index.

Layout under the registry root::

    registry.db              SQLite: bundles, actions (the history), slots (latest action)
    bundles/<bundle id>/     one verified bundle per id (SHA-256 of its manifest.json)
    tmp/                     bundles being copied in, renamed into bundles/ when whole

Safe with many writers on one machine (processes or threads): every write is one SQLite
transaction opened with ``BEGIN IMMEDIATE`` (the write lock is taken before anything is read,
so the compare-and-set of ``append`` cannot interleave) under a busy timeout, with the
database in WAL mode so readers never wait for writers. A bundle's files are copied into
``tmp/``, flushed to disk and renamed to ``bundles/<id>`` in one ``os.rename``, and its index
row is written only afterwards, so an indexed bundle is always whole. The store is meant for
a local disk: SQLite's locking is unreliable on network file systems.

Called through ``components.release.registry.DeviceRegistry``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

from components.errors import ComponentError
from components.release.backend import Action, Slot, StoredBundle

DB_NAME = "registry.db"
BUNDLES = "bundles"
SCRATCH = "tmp"
SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 60.0
_BUNDLE_ID = re.compile(r"^[0-9a-f]{64}$")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS bundles (
        bundle_id TEXT PRIMARY KEY CHECK (length(bundle_id) = 64),
        model TEXT NOT NULL, version TEXT NOT NULL, device TEXT NOT NULL, run_id TEXT,
        int8_accuracy REAL NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        signed INTEGER NOT NULL, stored_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ'))
    )""",
    """CREATE TABLE IF NOT EXISTS actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL, device TEXT NOT NULL,
        stage TEXT NOT NULL CHECK (stage IN ('staging', 'production')),
        kind TEXT NOT NULL CHECK (kind IN ('promote', 'rollback')),
        bundle_id TEXT NOT NULL REFERENCES bundles (bundle_id), version TEXT NOT NULL,
        previous_bundle_id TEXT REFERENCES bundles (bundle_id), previous_version TEXT,
        actor TEXT NOT NULL, at TEXT NOT NULL, reason TEXT NOT NULL, forced INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS actions_by_slot ON actions (model, device, stage, id)",
    """CREATE TABLE IF NOT EXISTS slots (
        model TEXT NOT NULL, device TEXT NOT NULL, stage TEXT NOT NULL,
        action_id INTEGER NOT NULL UNIQUE REFERENCES actions (id),
        PRIMARY KEY (model, device, stage)
    )""",
)
_ACTION_COLUMNS = tuple(f.name for f in fields(Action))
_BUNDLE_COLUMNS = tuple(f.name for f in fields(StoredBundle))

log = logging.getLogger(__name__)


class LocalBackend:
    """A :class:`~components.release.backend.RegistryBackend` in a local directory."""

    def __init__(self, root: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self._timeout = busy_timeout_s
        try:
            for folder in (self.root / BUNDLES, self.root / SCRATCH):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ComponentError(f"cannot create the device registry at {self.root}: {e}") from e
        self._create_schema()

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    # -- bundles ---------------------------------------------------------------------------

    def put_bundle(self, folder: Path, record: StoredBundle) -> StoredBundle:
        target = self._bundle_dir(record.bundle_id)
        if not target.exists():
            self._move_in(Path(folder), target)
        values = tuple(int(v) if isinstance(v, bool) else v for v in _row(record))
        with self._transaction() as db:
            db.execute(
                f"INSERT OR IGNORE INTO bundles ({', '.join(_BUNDLE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                values,
            )
        stored = self.bundle(record.bundle_id)
        assert stored is not None  # just inserted, and rows are never deleted
        return stored

    def _move_in(self, folder: Path, target: Path) -> None:
        """Copy into tmp/, flush, then rename whole into bundles/ (atomic on one file system);
        when another writer renamed the same id first, its copy stands."""
        scratch = self.root / SCRATCH / uuid.uuid4().hex
        try:
            shutil.copytree(folder, scratch, symlinks=True)
            _flush_tree(scratch)
            os.rename(scratch, target)
            _fsync_dir(target.parent)
        except OSError as e:
            if not target.is_dir():
                raise ComponentError(
                    f"cannot store bundle {target.name} in {self.root}: {e}"
                ) from e
            log.debug("bundle %s was stored by another writer", target.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def get_bundle(self, bundle_id: str, to_dir: Path) -> Path:
        source = self._bundle_dir(bundle_id)
        if not source.is_dir():
            raise ComponentError(f"bundle {bundle_id} is not in the registry at {self.root}")
        try:
            shutil.copytree(source, to_dir, symlinks=True)
        except OSError as e:
            raise ComponentError(f"cannot copy bundle {bundle_id} to {to_dir}: {e}") from e
        return Path(to_dir)

    def bundle(self, bundle_id: str) -> StoredBundle | None:
        rows = self._query("SELECT * FROM bundles WHERE bundle_id = ?", (bundle_id,))
        return _stored_bundle(rows[0]) if rows else None

    def bundles(self) -> tuple[StoredBundle, ...]:
        return tuple(map(_stored_bundle, self._query("SELECT * FROM bundles ORDER BY rowid")))

    def _bundle_dir(self, bundle_id: str) -> Path:
        if not _BUNDLE_ID.fullmatch(bundle_id):
            raise ComponentError(f"{bundle_id!r} is not a bundle id (64 hex digits, SHA-256)")
        return self.root / BUNDLES / bundle_id

    # -- history ---------------------------------------------------------------------------

    def head(self, slot: Slot) -> Action | None:
        rows = self._query(
            "SELECT actions.* FROM slots JOIN actions ON actions.id = slots.action_id "
            "WHERE slots.model = ? AND slots.device = ? AND slots.stage = ?",
            (slot.model, slot.device, slot.stage),
        )
        return _action(rows[0]) if rows else None

    def heads(self) -> tuple[Action, ...]:
        rows = self._query(
            "SELECT actions.* FROM slots JOIN actions ON actions.id = slots.action_id "
            "ORDER BY slots.model, slots.device, slots.stage"
        )
        return tuple(map(_action, rows))

    def history(
        self, model: str | None = None, device: str | None = None, stage: str | None = None
    ) -> tuple[Action, ...]:
        rows = self._query(
            "SELECT * FROM actions WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR "
            "device = ?2) AND (?3 IS NULL OR stage = ?3) ORDER BY id",
            (model, device, stage),
        )
        return tuple(map(_action, rows))

    def append(self, action: Action, expected_head: int | None) -> Action | None:
        values = [int(v) if isinstance(v, bool) else v for v in _row(action)][:-1]  # no id
        with self._transaction() as db:
            row = db.execute(
                "SELECT action_id FROM slots WHERE model = ? AND device = ? AND stage = ?",
                (action.model, action.device, action.stage),
            ).fetchone()
            if (row[0] if row else None) != expected_head:
                return None
            cursor = db.execute(
                f"INSERT INTO actions ({', '.join(_ACTION_COLUMNS[:-1])}) "
                f"VALUES ({', '.join('?' * len(values))})",
                values,
            )
            db.execute(
                "INSERT INTO slots (model, device, stage, action_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, device, stage) DO UPDATE SET action_id = excluded.action_id",
                (action.model, action.device, action.stage, cursor.lastrowid),
            )
        return replace(action, id=cursor.lastrowid)

    # -- SQLite ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=self._timeout, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first statement."""
        try:
            db = self._connect()
        except sqlite3.Error as e:
            raise ComponentError(f"cannot open the device registry {self.db_path}: {e}") from e
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as e:
            _rollback(db)
            raise ComponentError(f"device registry {self.db_path}: {e}") from e
        except BaseException:
            _rollback(db)
            raise
        finally:
            db.close()

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        try:
            db = self._connect()
            try:
                return db.execute(sql, params).fetchall()
            finally:
                db.close()
        except sqlite3.Error as e:
            raise ComponentError(f"cannot read the device registry {self.db_path}: {e}") from e

    def _create_schema(self) -> None:
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found[0] != SCHEMA_VERSION:
            raise ComponentError(
                f"{self.db_path}: registry schema version {found[0]} is not "
                f"{SCHEMA_VERSION}, which this version reads"
            )
        try:  # WAL: readers do not block the writer; a no-op once set (it persists)
            db = self._connect()
            try:
                db.execute("PRAGMA journal_mode = WAL")
            finally:
                db.close()
        except sqlite3.Error as e:
            raise ComponentError(f"cannot open the device registry {self.db_path}: {e}") from e


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _row(record: Action | StoredBundle) -> tuple:
    return tuple(getattr(record, f.name) for f in fields(record))


def _action(row: sqlite3.Row) -> Action:
    values = {name: row[name] for name in _ACTION_COLUMNS}
    return Action(**{**values, "forced": bool(values["forced"])})


def _stored_bundle(row: sqlite3.Row) -> StoredBundle:
    values = {name: row[name] for name in _BUNDLE_COLUMNS}
    return StoredBundle(**{**values, "signed": bool(values["signed"])})


def _flush_tree(folder: Path) -> None:
    """fsync every file and folder, so the rename never exposes unwritten data after a crash."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
