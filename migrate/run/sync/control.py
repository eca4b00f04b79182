"""How the outside steers a running sync: a cutover request (SIGUSR1, `migrate cutover`), safe from any thread or a
signal handler."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrate.errors import ConfigError, MigrationError


class SyncControl:
    def __init__(self) -> None:
        self._cutover = threading.Event()

    def request_cutover(self) -> None:
        """Cut over as soon as the target has caught up (a request during the snapshot waits for the stream)."""
        self._cutover.set()

    @property
    def cutover_requested(self) -> bool:
        return self._cutover.is_set()

    def clear(self) -> None:
        """A cutover attempt was called off (not drained within --max-pause): the operator may ask again."""
        self._cutover.clear()


def request_cutover(status_file: Path, wait: float,
                    on_cut: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Ask the sync whose status file this is to cut over (SIGUSR1 to its pid); wait up to `wait` seconds for it to
    finish, calling `on_cut` once with the status when the cutover point is reached (phase grace: the moment to
    repoint clients). Returns the last status document; raises when there is no such sync or the cutover did not
    finish."""
    from migrate.run.sync.report import read_status

    status = read_status(status_file)
    pid = int(status["pid"])
    if status.get("state") != "running":
        raise ConfigError(f"the sync of {status_file} is not running (state {status.get('state')!r}, phase "
                          f"{status.get('phase')!r})", "start it again with --resume first")
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise ConfigError(f"no process {pid}: the sync of {status_file} has stopped without saying so (killed?)",
                          "rerun it with --resume, then ask for the cutover again") from None
    except PermissionError:
        raise ConfigError(f"process {pid} belongs to another user",
                          "run `migrate cutover` as the sync's user") from None
    deadline = time.monotonic() + wait
    while wait and time.monotonic() < deadline:
        time.sleep(0.2)
        status = read_status(status_file)
        if on_cut is not None and (status.get("phase") == "grace" or status.get("cutover")):
            on_cut(status)
            on_cut = None
        if status.get("state") != "running":
            break
    else:
        return status
    if status.get("state") == "done":
        return status
    raise MigrationError(f"the sync ended without a cutover (state {status.get('state')!r}): "
                         f"{status.get('error') or 'see its log'}", "rerun it with --resume")
