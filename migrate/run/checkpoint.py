"""The resumable state of a replay: per database the SCAN cursor reached and the counters so far, in one JSON file.

Written atomically (temporary file in the same folder, fsync, rename), so a kill -9 leaves either the previous or the
new version, never half a file. The cursor only moves past a batch once every key of it is on the target, so a resumed
run redoes at most the batches after the last save. Endpoints are stored in their redacted form: the file never holds
a password. The file is bound to the servers it was made for (their run_ids: a restart of either is noticed) and
carries a checksum of its content, so a hand-edited checkpoint is refused rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from migrate.errors import BadInputError, ConfigError
from migrate.run.tally import DbTally

FORMAT: Final = 2


@dataclass
class DbState:
    tally: DbTally
    cursor: int = 0
    done: bool = False
    # The target db was empty when the run began (or --replace was given): any key found there later is one this
    # run wrote, so a resumed or resent batch may overwrite it.
    may_replace: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "done": self.done, "may_replace": self.may_replace,
                "tally": self.tally.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DbState:
        return cls(DbTally.from_dict(data["tally"]), int(data["cursor"]), bool(data["done"]),
                   bool(data["may_replace"]))


@dataclass
class Checkpoint:
    path: Path
    fingerprint: dict[str, Any]  # what the run copies: a resume must copy the same
    dbs: dict[int, DbState] = field(default_factory=dict)
    functions_done: bool = False
    source_run_id: str = ""  # the servers' run_ids when the state was saved (a different one: it restarted)
    target_run_id: str = ""
    flush_pending: list[int] = field(default_factory=list)  # --flush-target: target dbs not flushed yet
    empty_dbs: list[int] = field(default_factory=list)  # a sharded replay: target dbs empty at the start (ours)
    started_at: float = field(default_factory=time.time)
    saved_at: float = 0.0
    _saver: threading.Thread | None = field(default=None, repr=False)
    _error: OSError | None = field(default=None, repr=False)

    def text(self) -> str:
        data = {"format": FORMAT, "fingerprint": self.fingerprint, "started_at": self.started_at,
                "saved_at": time.time(), "functions_done": self.functions_done,
                "source_run_id": self.source_run_id, "target_run_id": self.target_run_id,
                "flush_pending": self.flush_pending, "empty_dbs": self.empty_dbs,
                "dbs": {str(db): state.to_dict() for db, state in sorted(self.dbs.items())}}
        return sealed(data)

    def save(self) -> None:
        """Save now, after any save still in flight (the last word is always the newest state)."""
        self._join()
        try:
            write_atomic(self.path, self.text())
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        self.saved_at = time.monotonic()

    def save_every(self, interval: float) -> None:
        """Save in the background unless the last save was less than `interval` seconds ago or is still writing.

        The state is serialized here, in the caller's thread (a consistent snapshot); the write and its two fsyncs
        (tens of ms on some disks) happen in a thread, off the copy's critical path.
        """
        if time.monotonic() - self.saved_at < interval or (self._saver is not None and self._saver.is_alive()):
            return
        self._join()
        self.saved_at = time.monotonic()
        self._saver = threading.Thread(target=self._write, args=(self.text(),), name="migrate-checkpoint",
                                       daemon=True)
        self._saver.start()

    def _write(self, text: str) -> None:
        try:
            write_atomic(self.path, text)
        except OSError as exc:  # raised by the next save() in the caller's thread
            self._error = exc

    def _join(self) -> None:
        if self._saver is not None:
            self._saver.join()
            self._saver = None
        error, self._error = self._error, None
        if error is not None:
            raise _unwritable(self.path, error)

    def remove(self) -> None:
        self._join()
        self.path.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path, fingerprint: dict[str, Any]) -> Checkpoint:
        data = read_sealed(path, FORMAT, "a checkpoint of this version of migrate", fingerprint,
                           "resume with the same source, target and key selection, or start over without --resume")
        try:
            dbs = {int(db): DbState.from_dict(state) for db, state in data["dbs"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"checkpoint {path} is damaged: {exc}") from None
        return cls(path, fingerprint, dbs, bool(data.get("functions_done")), str(data.get("source_run_id", "")),
                   str(data.get("target_run_id", "")), [int(db) for db in data.get("flush_pending", [])],
                   [int(db) for db in data.get("empty_dbs", [])], float(data.get("started_at", 0)))


def check_writable(path: Path) -> None:
    """Fail before the run writes anything when the checkpoint cannot be written where it is asked for."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=path.name + ".", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _unwritable(path, exc) from None


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write the checkpoint {path}: {exc.strerror or exc}",
                       "give --checkpoint FILE in a folder this user can write")


def sealed(data: dict[str, Any]) -> str:
    """A checkpoint's JSON text with the checksum of its content (read back by read_sealed)."""
    return json.dumps({**data, "checksum": _checksum(data)}, indent=1, ensure_ascii=True)


def read_sealed(path: Path, fmt: object, kind: str, fingerprint: dict[str, Any], same: str) -> dict[str, Any]:
    """A checkpoint's content: refused when missing, unreadable, of another format (`kind` says which it should be),
    edited (its checksum) or made for another run (its fingerprint: `same` says how to resume)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no checkpoint to resume from: {path}",
                          "run without --resume, or give the file with --checkpoint FILE") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise BadInputError(f"{path} is not {kind}")
    if data.pop("checksum", None) != _checksum(data):
        raise BadInputError(f"checkpoint {path} was modified or damaged (its checksum does not match)",
                            "a checkpoint is written by migrate only: start over without --resume")
    if data.get("fingerprint") != fingerprint:
        differs = _differences(data.get("fingerprint"), fingerprint)
        raise ConfigError(f"checkpoint {path} is for another run ({differs})", same)
    return data


def _checksum(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def _differences(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "no fingerprint"
    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "differs in " + ", ".join(names)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); not possible on every platform, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
