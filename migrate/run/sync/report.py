"""What a running sync shows the outside, from one background thread: the status file (JSON, rewritten atomically
twice a second), Prometheus metrics on --metrics-address (read from the same state at each scrape), the source's
replication offset (INFO, once a second) and a progress line in the log every PROGRESS_SECONDS."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from migrate.errors import ConfigError
from migrate.logs import get_logger
from migrate.run.sync.state import PHASES, SyncState

log = get_logger("migrate.sync")

STATUS_SECONDS: Final = 0.5
OFFSET_SECONDS: Final = 1.0
PROGRESS_SECONDS: Final = 10.0

OffsetReader = Callable[[], int | None]


def write_status(path: Path, document: dict[str, Any]) -> None:
    """Atomically: a reader sees the previous or the new document, never half of one (no fsync: it is a view)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_status(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no status file {path}", "give the --status-file of a running `migrate run --strategy "
                          "sync`") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the status file {path}: {exc}") from None
    if not isinstance(data, dict) or "phase" not in data or "pid" not in data:
        raise ConfigError(f"{path} is not a status file of `migrate run --strategy sync` or relay")
    return data


class _Metrics(Collector):
    """The state as Prometheus metrics, built at each scrape (no copy to keep in step)."""

    def __init__(self, state: SyncState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        doc = self.state.document()
        yield _gauge("migrate_sync_lag_bytes", "Bytes of the source's stream not yet applied", doc["lag_bytes"])
        yield _gauge("migrate_sync_lag_seconds", "Age of the oldest byte not yet applied", doc["lag_seconds"])
        yield _gauge("migrate_sync_source_offset", "The source's replication offset", doc["source_offset"])
        yield _gauge("migrate_sync_received_offset", "Offset received from the source", doc["received_offset"])
        yield _gauge("migrate_sync_applied_offset", "Offset the target acknowledged", doc["applied_offset"])
        phase = GaugeMetricFamily("migrate_sync_phase", "1 for the current phase", labels=["phase"])
        for name in PHASES:
            phase.add_metric([name], 1.0 if doc["phase"] == name else 0.0)
        yield phase
        resyncs = CounterMetricFamily("migrate_sync_resyncs", "Stream starts by kind", labels=["kind"])
        resyncs.add_metric(["full"], doc["counters"]["full_resyncs"])
        resyncs.add_metric(["partial"], doc["counters"]["partial_resyncs"])
        yield resyncs
        for name, value in doc["counters"].items():
            if name not in ("full_resyncs", "partial_resyncs"):
                yield CounterMetricFamily(f"migrate_sync_{name}", f"sync counter {name}", value=value)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


class Reporter:
    """Started with the sync, stopped (with a last status write) when it ends, whatever the outcome."""

    def __init__(self, state: SyncState, status_file: Path | None, metrics_address: tuple[str, int] | None) -> None:
        self.state = state
        self.status_file = status_file
        self.metrics_address = metrics_address
        self.source_offset: OffsetReader | None = None  # set once a replication stream exists
        self.waiting_since: Callable[[], float | None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="migrate-sync-report", daemon=True)
        self._server: Any = None
        self._logged = 0.0
        self._offset_read = 0.0
        self._writing = threading.Lock()  # the ticking thread and a milestone (state.published) both write

    def start(self) -> Reporter:
        self.state.published = self.write
        if self.status_file is not None:
            self.status_file.parent.mkdir(parents=True, exist_ok=True)
            self.write()  # a status file exists from the first moment (and an unwritable folder fails now)
        if self.metrics_address is not None:
            host, port = self.metrics_address
            registry = CollectorRegistry(auto_describe=True)
            registry.register(_Metrics(self.state))
            try:
                self._server, _ = start_http_server(port, host, registry=registry)
            except OSError as exc:
                raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                                  "give --metrics-address a free HOST:PORT") from None
            log.info("metrics served", address=f"{host}:{port}")
        self._thread.start()
        return self

    def write(self) -> None:
        if self.status_file is not None:
            try:
                with self._writing:  # the document is taken under the lock: an older one never replaces a newer one
                    write_status(self.status_file, self.state.document())
            except OSError as exc:
                raise ConfigError(f"cannot write the status file {self.status_file}: {exc.strerror or exc}",
                                  "give --status-file a path in a writable folder") from None

    def _run(self) -> None:
        while not self._stop.wait(STATUS_SECONDS):
            try:
                self._tick()
            except Exception as exc:  # the report must never stop the sync; say why it is stale
                log.warning("status not updated", error=" ".join(str(exc).split())[:200])

    def _tick(self) -> None:
        now = time.monotonic()
        if self.source_offset is not None and now - self._offset_read >= OFFSET_SECONDS:
            self._offset_read = now
            offset = self.source_offset()
            if offset is not None:
                self.state.source_offset, self.state.source_offset_read = offset, True
        if self.waiting_since is not None:
            self.state.waiting_since = self.waiting_since()
        self.write()
        if now - self._logged >= PROGRESS_SECONDS:
            self._logged = now
            self.log_progress()

    def log_progress(self) -> None:
        s = self.state
        if s.phase == "snapshot":
            log.info("sync snapshot", bytes_received=s.snapshot_bytes, keys_loaded=s.snapshot_keys_loaded,
                     keys_total=s.snapshot_keys_total)
        else:
            log.info("sync", phase=s.phase, lag_bytes=s.lag_bytes, lag_seconds=s.lag_seconds,
                     applied_offset=s.applied_offset, commands=s.tally.commands)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
        self.state.published = None
        with contextlib.suppress(ConfigError):
            self.write()
