"""Content-addressed cache of stage outputs: fingerprints, the code version, atomic entries.

Used by the pipelines to skip a stage whose inputs, config section and code are unchanged
(``pipelines.chain``), and meant for anything else that wants to reuse finished work (the
fit-to-device search reusing evaluated candidates). Four things, nothing pipeline-specific:

- :func:`fingerprint` of any config section, artifact or key (canonical JSON, SHA-256);
  :func:`files_fingerprint` of files named by path (size and modification time, as make
  and Bazel judge a source file), for inputs that live outside the cache;
- :func:`code_version`: the project's package sources (kernel ``.cc``/``.h`` included) and
  the TensorFlow, Keras and tflite-micro versions, so a code change invalidates every entry;
- :class:`StageCache`: ``<root>/<stage>/<key>/`` holds a stage's files and ``artifact.json``
  (the artifact dataclass and the SHA-256 of every file). An entry is built in a temporary
  folder and moved into place with one ``os.replace``, under an ``fcntl`` lock per entry, so
  a reader sees a whole entry or none, and two processes computing the same entry build it
  once (the second waits, then reuses it). A damaged entry (bad JSON, a missing or changed
  file) counts as absent and is rebuilt;
- :func:`save_artifact` / :func:`load_artifact`: an artifact dataclass as JSON, nested
  dataclasses, paths, tuples and mappings restored to their types. Paths inside the cache
  are stored relative to the entry, so a cache folder can move.

Entries accumulate (every code change keys every stage anew), so the cache also keeps what
pruning needs: when each entry was last used (its folder's modification time, set whenever
it is read), the keys each recent run used (:meth:`StageCache.record_run`), and
:meth:`StageCache.prune`, which removes the entries and leftovers no kept run used, skipping
any entry a running process holds.

POSIX only (``fcntl``), like the rest of the project's tooling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import PydanticSerializationError, to_jsonable_python

from components.errors import ComponentError

log = logging.getLogger(__name__)

T = TypeVar("T")
ARTIFACT_FILE = "artifact.json"
RUNS_FILE = "runs.json"  # the keys the latest runs used, newest first
RUNS_KEPT = 20  # runs remembered in it
FORMAT = 1  # of artifact.json; an entry in another format is rebuilt
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "pipelines", "tflm_ext")
SOURCE_SUFFIXES = (".py", ".cc", ".h", ".c", ".json")
# Libraries whose version changes what a stage writes (models, conversions, TFLM's figures).
LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "tflite-micro")
_DATACLASS, _PATH = "__dataclass__", "__path__"
_DECODABLE = tuple(f"{p}." for p in PACKAGES)  # only the project's own classes are rebuilt


def fingerprint(*parts: object) -> str:
    """A 16-hex-digit SHA-256 of ``parts`` (config sections, dataclasses, paths, mappings,
    other fingerprints) as canonical JSON: equal values, equal fingerprints."""
    try:
        text = json.dumps(to_jsonable_python(parts, fallback=_jsonable), sort_keys=True)
    except (TypeError, ValueError, PydanticSerializationError) as e:
        raise ComponentError(f"cannot fingerprint {parts!r:.120}: {e}") from e
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def files_fingerprint(paths: Iterable[str | Path]) -> str:
    """A fingerprint of files by path, size and modification time (a missing file counts
    too): cheap enough for a data set of 100,000 files, and it changes when one is
    rewritten."""
    stats = []
    for path in sorted({str(p) for p in paths}):
        try:
            stat = os.stat(path)
            stats.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            stats.append((path, None, None))
    return fingerprint(stats)


@functools.lru_cache(maxsize=8)
def code_version(root: Path = PROJECT_ROOT, packages: tuple[str, ...] = PACKAGES) -> str:
    """A fingerprint of every source file of ``packages`` under ``root`` (path and bytes)
    and of the installed :data:`LIBRARIES` versions. Computed once per process."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return fingerprint(digest.hexdigest(), {name: _version(name) for name in LIBRARIES})


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):  # e.g. a read-only mapping proxy in an artifact
        return dict(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}: {value!r:.80}")


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """A published entry, or the leftovers of one (``published`` False: a killed build's
    temporary folder or a resume folder whose entry never appeared)."""

    stage: str
    key: str
    size_bytes: int
    last_used: float  # seconds since the epoch
    published: bool = True


class StageCache:
    """Entries ``<root>/<stage>/<key>/``, each a stage's files and its ``artifact.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def scratch(self, stage: str, key: str) -> Path:
        """A folder that survives an interrupted build of the entry (say, training's
        backup); removed once the entry is published or rebuilt with ``force``."""
        return self.root / stage / f"{key}.resume"

    @contextlib.contextmanager
    def lock(self, stage: str, name: str, *, wait: bool = True) -> Iterator[None]:
        """Hold an exclusive ``fcntl`` lock on ``<root>/<stage>/<name>.lock`` (released when
        the process dies, so a killed run never leaves a stale lock). Without ``wait``, a
        lock another process holds raises ``BlockingIOError`` at once."""
        path = self.root / stage / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, stage: str, key: str) -> Any | None:
        """The entry's artifact, or None when there is no whole, intact entry."""
        folder = self.entry(stage, key)
        try:
            record = json.loads((folder / ARTIFACT_FILE).read_text())
            if record.get("format") != FORMAT or record.get("key") != key:
                raise ValueError(f"format {record.get('format')}, key {record.get('key')}")
            _check_files(folder, record["files"])
            artifact = _decode(record["artifact"], folder)
            _check_paths_exist(artifact)
        except FileNotFoundError:
            if folder.exists():
                log.warning("ignoring cache entry %s: incomplete", folder)
            return None
        except (OSError, ValueError, KeyError, TypeError, ComponentError) as e:
            log.warning("ignoring cache entry %s: %s", folder, e)
            return None
        with contextlib.suppress(OSError):  # a read-only cache still reads
            os.utime(folder)  # last used: what pruning by age goes by
        return artifact

    def compute(
        self, stage: str, key: str, build: Callable[[Path], T], *, force: bool = False
    ) -> tuple[T, bool]:
        """(artifact, reused): the entry's artifact when it is whole and not ``force``d,
        else ``build(folder)``'s, built in a temporary folder and published atomically.
        The returned artifact is always the one read back from the entry, so a reused and
        a fresh result are alike to the last field."""
        with self.lock(stage, key):
            if not force and (cached := self.load(stage, key)) is not None:
                return cached, True
            if force:
                shutil.rmtree(self.scratch(stage, key), ignore_errors=True)
            self._publish(stage, key, build)
            shutil.rmtree(self.scratch(stage, key), ignore_errors=True)
            artifact = self.load(stage, key)
        if artifact is None:
            raise ComponentError(f"stage {stage}: the entry just written to "
                                 f"{self.entry(stage, key)} cannot be read back")  # fmt: skip
        return artifact, False

    def record_run(self, run: str, keys: Mapping[str, str]) -> None:
        """Remember that run ``run`` (any id, one per run) used ``keys`` (stage -> key);
        called as each stage finishes, so an interrupted run's finished stages count too."""
        with self.lock(".", "runs"):
            runs = [r for r in self.recent_runs() if r["run"] != run]
            runs.insert(0, {"run": run, "keys": dict(keys)})
            partial = self.root / f".{RUNS_FILE}.partial"
            partial.write_text(json.dumps(runs[:RUNS_KEPT], indent=1) + "\n")
            os.replace(partial, self.root / RUNS_FILE)

    def used_by_recent_runs(self, runs: int) -> set[tuple[str, str]]:
        """The (stage, key) pairs the latest ``runs`` runs used."""
        return {(stage, key) for r in self.recent_runs()[:runs]
                for stage, key in r["keys"].items()}  # fmt: skip

    def recent_runs(self) -> list[dict[str, Any]]:
        """The runs :meth:`record_run` remembers, newest first (none when unreadable)."""
        try:
            runs = json.loads((self.root / RUNS_FILE).read_text())
            return [r for r in runs if isinstance(r.get("keys"), dict)]
        except (OSError, ValueError, AttributeError):
            return []

    def entries(self) -> list[CacheEntry]:
        """Every entry and every leftover folder, by stage and key."""
        found: dict[tuple[str, str], CacheEntry] = {}
        stages = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for folder in (f for stage in stages for f in sorted(stage.iterdir()) if f.is_dir()):
            stage, name = folder.parent.name, folder.name
            key = name.lstrip(".").split(".")[0]  # <key>, .<key>.tmp-*, .<key>.old-*, <key>.resume
            if (stage, key) not in found:
                folders = self._folders(stage, key)
                size = sum(f.stat().st_size for p in folders for f in p.rglob("*") if f.is_file())
                last_used = max(p.stat().st_mtime for p in folders)
                found[stage, key] = CacheEntry(stage, key, size, last_used,
                                               self.entry(stage, key).is_dir())  # fmt: skip
        return list(found.values())

    def prune(
        self, *, keep_runs: int = 1, unused_for_s: float = 0.0, dry_run: bool = False
    ) -> tuple[list[CacheEntry], list[CacheEntry]]:
        """(removed, kept): remove every entry (and its scratch and killed builds) that
        none of the latest ``keep_runs`` runs used and that no run read for
        ``unused_for_s`` seconds. An entry a running process holds (building or reading it)
        is kept. Removing an entry that a kept one names only makes that one rebuild."""
        keep = self.used_by_recent_runs(keep_runs)
        cutoff = time.time() - unused_for_s
        removed, kept = [], []
        for entry in self.entries():
            if (entry.stage, entry.key) in keep or entry.last_used > cutoff:
                kept.append(entry)
                continue
            try:
                with self.lock(entry.stage, entry.key, wait=False):
                    if not dry_run:
                        for path in self._folders(entry.stage, entry.key):
                            shutil.rmtree(path, ignore_errors=True)
            except BlockingIOError:
                kept.append(entry)
                continue
            removed.append(entry)
        return removed, kept

    def _folders(self, stage: str, key: str) -> list[Path]:
        """The entry's folder, its scratch and any killed build's, those that exist."""
        candidates = [self.entry(stage, key), self.scratch(stage, key)]
        return [p for p in (*candidates, *self._killed_builds(stage, key)) if p.is_dir()]

    def _killed_builds(self, stage: str, key: str) -> list[Path]:
        """What killed builds of the entry left: ``.<key>.tmp-*`` and ``.<key>.old-*``."""
        return sorted(self.entry(stage, key).parent.glob(f".{key}.*"))

    def _publish(self, stage: str, key: str, build: Callable[[Path], Any]) -> None:
        """Build in ``.<key>.tmp-*`` beside the entry, then swap it in: the old entry (a
        forced or damaged one) is moved aside first, since a folder cannot replace a full
        one. Leftovers of killed builds are removed: only the lock holder writes there."""
        folder = self.entry(stage, key)
        for stale in self._killed_builds(stage, key):
            shutil.rmtree(stale, ignore_errors=True)
        temporary = folder.with_name(f".{key}.tmp-{uuid.uuid4().hex}")
        temporary.mkdir(parents=True)
        try:
            artifact = build(temporary)
            save_artifact(artifact, temporary, self.root, key=key)
            old = folder.with_name(f".{key}.old-{uuid.uuid4().hex}")
            if folder.exists():
                os.replace(folder, old)
            os.replace(temporary, folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)


def save_artifact(artifact: Any, folder: Path, anchor: Path, *, key: str = "") -> Path:
    """Write ``artifact`` and the SHA-256 of every file in ``folder`` to its
    ``artifact.json`` (atomically); paths inside ``anchor`` are stored relative to
    ``folder``."""
    folder = Path(folder)
    record = {
        "format": FORMAT,
        "key": key,
        "artifact": _encode(artifact, folder, Path(os.path.abspath(anchor))),
        "files": {
            str(p.relative_to(folder)): _sha256(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ARTIFACT_FILE
        },
    }
    path = folder / ARTIFACT_FILE
    partial = folder / f".{ARTIFACT_FILE}.partial"
    partial.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=True) + "\n")
    os.replace(partial, path)
    return path


def load_artifact(folder: Path) -> Any:
    """The artifact saved in ``folder`` (files unchecked; :meth:`StageCache.load` checks)."""
    folder = Path(folder)
    return _decode(json.loads((folder / ARTIFACT_FILE).read_text())["artifact"], folder)


def _encode(value: Any, folder: Path, anchor: Path) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {
            _DATACLASS: f"{cls.__module__}:{cls.__qualname__}",
            "fields": {
                f.name: _encode(getattr(value, f.name), folder, anchor)
                for f in dataclasses.fields(value)
            },
        }
    if isinstance(value, Path):
        path = os.path.abspath(value)
        inside = os.path.commonpath([path, anchor]) == str(anchor)
        return {_PATH: os.path.relpath(path, folder) if inside else path}
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ComponentError(f"cannot save a mapping with non-string keys: {value!r:.80}")
        return {k: _encode(v, folder, anchor) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_encode(v, folder, anchor) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if hasattr(value, "item"):  # a NumPy scalar
        return value.item()
    raise ComponentError(f"cannot save a {type(value).__name__} in an artifact: {value!r:.80}")


def _decode(value: Any, folder: Path) -> Any:
    if isinstance(value, list):
        return tuple(_decode(v, folder) for v in value)
    if not isinstance(value, dict):
        return value
    if _PATH in value:
        return Path(os.path.normpath(folder / value[_PATH]))
    if _DATACLASS in value:
        cls = _artifact_class(value[_DATACLASS])
        return cls(**{k: _decode(v, folder) for k, v in value["fields"].items()})
    return {k: _decode(v, folder) for k, v in value.items()}


def _artifact_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith(_DECODABLE):
        raise ComponentError(f"{name}: not one of the project's artifact classes")
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as e:
        raise ComponentError(f"{name}: no such artifact class") from e
    if not dataclasses.is_dataclass(cls):
        raise ComponentError(f"{name}: not a dataclass")
    return cls


def _check_files(folder: Path, files: Mapping[str, str]) -> None:
    for name, digest in files.items():
        if _sha256(folder / name) != digest:
            raise ValueError(f"{name} differs from the file that was published")


def _check_paths_exist(artifact: Any) -> None:
    """Every path the artifact names still exists (an upstream entry may have gone)."""
    for path in _paths(artifact):
        if not path.exists():
            raise ValueError(f"{path} is gone")


def _paths(value: Any) -> Iterator[Path]:
    if isinstance(value, Path):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _paths(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _paths(v)
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _paths(v)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
