"""Strategy 5, relay: migrate stands between the two servers. Toward the source it is a replica (ReplicaLink), toward
the target it is the primary (ReplicaServer): the target runs `REPLICAOF <relay address>`, loads the source's
snapshot transcoded for its release (native loading speed, no per-key RESTORE), then replicates the source's write
stream, translated for its release, until a cutover makes it a primary again.

    source --PSYNC--> ReplicaLink --snapshot--> transcode (rdb.transcode) --> spool file --$EOF: RDB--> target
                           |--stream spool--> Translator --> RespWriter --> ReplicaServer --stream--> target
                           `<-- REPLCONF ACK <source offset the TARGET acknowledged> (offsets.OffsetMap)

The snapshot is transcoded while it arrives, into a local file: a snapshot the target cannot take under
--on-incompatible fail, or a corrupt one, stops the run before the target is touched, and the target's full sync
then reads a finished, checked file. Every full sync of the target (the first, a source that restarted, a target
that came back without the relay's history) starts from a fresh source snapshot: the relay keeps no dataset, and a
replica's full sync replaces the target's whole dataset (keys the source deleted meanwhile cannot survive). The
target's own reconnections are continued from the relay's backlog (+CONTINUE) when it covers them. docs/relay.md
has the details.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import time
from typing import Any, Final

from migrate.errors import (
    BadInputError,
    ConfigError,
    ConnectError,
    IncompatibleDataError,
    MigrateError,
    MigrationError,
    TargetNotEmptyError,
)
from migrate.identity import config_value
from migrate.logs import get_logger
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.target import TargetFormat
from migrate.rdb.transcode import TranscodeReport, transcode_chunks
from migrate.replication import (
    LinkLostError,
    LinkOptions,
    PrimaryOptions,
    PrimaryState,
    RawRun,
    ReplicaLink,
    ReplicaServer,
    StreamCommand,
)
from migrate.replication.primary import file_chunks
from migrate.rights import Context, check_rights
from migrate.run.checkpoint import check_writable
from migrate.run.options import RunConfig
from migrate.run.relay.offsets import OffsetMap
from migrate.run.relay.target import TargetReplica
from migrate.run.relay.target import where as _where
from migrate.run.result import DbReport, RelayReport, RunResult, SyncReport
from migrate.run.session import open_servers
from migrate.run.spool import check_space, spool_folder
from migrate.run.sync.checkpoint import SyncCheckpoint
from migrate.run.sync.control import SyncControl
from migrate.run.sync.follow import (
    RECONNECT_SECONDS,
    FollowJob,
    drive,
    fingerprint,
    refuse_auto_cutover,
    remove_leftovers,
    translated,
)
from migrate.run.sync.report import Reporter
from migrate.run.sync.state import SyncState
from migrate.run.tally import KeyIssue
from migrate.server import Server
from migrate.stream import DbMap, RespWriter, TargetProfile, Translator

log = get_logger("migrate.relay")

PREFIX: Final = "migrate-relay-"  # spool files: <prefix><pid>.rdb (the transcoded snapshot), <prefix><pid>.stream/
READ_COMMANDS: Final = 2000  # source commands parsed per round
GETACK_SECONDS: Final = 0.1  # at most this often, ask the target for its offset while it has not acknowledged all
GETACK_CUTOVER_SECONDS: Final = 0.02
TARGET_AWAY_SECONDS: Final = 3.0  # the target's link down this long: look at the target (restarted? taken away?)
CONNECT_SECONDS: Final = 30.0  # REPLICAOF sent, the target must have asked for its sync within this
SNAPSHOT_ATTEMPTS: Final = 3  # a source link lost during its snapshot: a new one, this many times at most
BACKLOG_BYTES: Final = 64 << 20  # the relay's backlog: a target reconnecting within it continues (+CONTINUE)


def relay(config: RunConfig, control: SyncControl | None = None) -> RunResult:
    """Relay the source into the target until the cutover; raises a MigrateError subclass on failure, having made the
    target a primary again (or saying that it could not)."""
    started = time.monotonic()
    options = config.options
    source, target = open_servers(config)
    try:
        refuse_auto_cutover(options, [source])
        check_writable(options.checkpoint)
        address = relay_address(options.relay_address, target)
        refuse_tls_replication(target)
        check_rights("relay", {"source": (source, 0), "target": (target, 0)},
                     Context(source.identity.capabilities, target.identity.capabilities, options.flush_target))
        state = SyncState(source.identity.describe(), target.identity.describe(), mode="relay")
        reporter = Reporter(state, options.status_file, options.metrics_address).start()
        job = RelayJob(config, source, target, state, control or SyncControl(), reporter, address)
        report = drive(job, options.checkpoint)
        return RunResult("relay", source.identity.describe(), target.identity.describe(), executed=True,
                         dry_run=False, resumed=options.resume, seconds=time.monotonic() - started,
                         dbs=job.db_reports(), notes=tuple(state.notes), sync=report)
    finally:
        source.close()
        target.close()


def relay_address(given: tuple[str, int] | None, target: Server) -> tuple[str, int]:
    """Where migrate listens for the target: --relay-address, else a free loopback port when the target is local."""
    if given is not None:
        return given
    endpoint = target.endpoint
    if endpoint.path or _loopback(endpoint.host):
        return ("::1" if endpoint.host == "::1" else "127.0.0.1", 0)
    raise ConfigError(f"the target {endpoint.address} is not on this machine: migrate cannot guess the address the "
                      "target reaches it at", "give --relay-address HOST:PORT, an address of this machine the target "
                      "can connect to (e.g. --relay-address 10.0.0.7:16379)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_tls_replication(target: Server, what: str = "the relay", instead: str = "--strategy sync") -> None:
    if (config_value(target.client, "tls-replication") or "no").lower() == "yes":
        raise ConfigError(f"the target replicates over TLS (tls-replication yes): {what} serves replication in "
                          f"plain TCP", f"use {instead}, or set tls-replication no on the target for the "
                          "migration")


class RelayJob(FollowJob):
    """One relay from its first full sync of the target to its cutover."""

    strategy = "relay"

    def __init__(self, config: RunConfig, source: Server, target: Server, state: SyncState, control: SyncControl,
                 reporter: Reporter, address: tuple[str, int]) -> None:
        super().__init__(config, source, target, state, control, reporter)
        self.format = TargetFormat.from_identity(target.identity)
        self.profile = TargetProfile.of(target.client)
        folder = spool_folder(self.options.spool_dir)
        self.snapshot_path = folder / f"{PREFIX}{state.pid}.rdb"
        self.stream_dir = folder / f"{PREFIX}{state.pid}.stream"
        self.wanted_address = address
        self.replica = TargetReplica(target, self.settings)
        self.server: ReplicaServer | None = None
        self.translator: Translator | None = None
        self.writer = RespWriter(db=-1)
        self.offsets = OffsetMap(0, 0)
        self.snapshot: TranscodeReport | None = None
        self.synced_at = 0  # the relay offset of the target's last full sync
        self.promoted = False
        self.masterauth = "unchanged"
        self._asked = -1  # relay offset of the last GETACK
        self._asked_at = 0.0
        self._away_since: float | None = None
        self._dropped_syncs = 0  # full syncs the target dropped in a row

    # -- the whole relay ------------------------------------------------------------------------------------------

    def run(self) -> SyncReport:
        from migrate.run.sync.cutover import cut_over_when_asked

        check_space(self.source, self.snapshot_path.parent)
        remove_leftovers(self.snapshot_path.parent, PREFIX)
        self.reporter.source_offset = self.read_source_offset
        self.reporter.waiting_since = self.waiting_since
        why = self._resume() if self.options.resume else self._start()
        self.server = self._listen()
        self._first_sync(why)
        cutover = cut_over_when_asked(self)
        self.state.phase, self.state.state = "done", "done"
        self._show()
        assert self.checkpoint is not None
        self.checkpoint.remove()
        return SyncReport("relay", self.replid, self.applied[0], tuple(self.resyncs), self.state.tally.to_dict(),
                          self.state.snapshot_loads, cutover, relay=self._report())

    def _start(self) -> str:
        """A first run: the target is a primary without keys, or --flush-target --yes lets the relay replace it."""
        options, ident = self.options, self.target.identity
        if ident.role != "master" and not options.flush_target:
            raise MigrationError(f"the target {ident.describe()} is a replica (of {self._primary_of_target()})",
                                 "if a relay was killed while the target replicated from it, rerun with --resume; "
                                 "to replace the target's data anyway, give --flush-target --yes")
        held = {db: n for db, n in ident.keyspace.items() if n}
        if held and not options.flush_target:
            listed = ", ".join(f"db {db} holds {n} keys" for db, n in sorted(held.items()))
            raise TargetNotEmptyError(f"target is not empty: {listed} (a full sync from the relay would replace "
                                      "them)")
        self.replica.read_settings()
        self._new_checkpoint()
        return "first sync" if not held else "first sync (--flush-target: the target's keys are replaced)"

    def _resume(self) -> str:
        """After a kill or a failure: the target is this relay's (the checkpoint), a primary again or a replica of
        the killed relay's address. The relay's stream died with its process: a new full sync."""
        cp = SyncCheckpoint.load(self.options.checkpoint, fingerprint("relay", self.config, self.source,
                                                                      self.target))
        given = list(cp.extra.get("address") or ())
        earlier = (str(given[0]), int(given[1])) if len(given) == 2 else None
        replication = self.replica.replication()
        if replication.role != "master" and (earlier is None or replication.primary != earlier):
            raise MigrationError(f"the target replicates from {replication.primary}, not from the relay this "
                                 f"checkpoint is of (at {earlier}): someone else made it a replica",
                                 "check the target; to replace its data anyway, start over with --flush-target "
                                 "--yes")
        if replication.role != "master":
            self.replica.attached = earlier  # the killed relay's replica: made a primary again if this run fails
        self.checkpoint = cp
        self.replica.had_masterauth = bool(cp.extra.get("had_masterauth"))
        self.replica.read_settings()
        state = "a replica of the killed relay" if replication.role != "master" else "a primary again"
        self.note(f"resume: the target was {state}: a new full sync (a relay's stream does not outlive its process)")
        return "resume: a new full sync"

    def _new_checkpoint(self) -> None:
        self.checkpoint = SyncCheckpoint(self.options.checkpoint, fingerprint("relay", self.config, self.source,
                                                                              self.target), owns_target=True)
        self.checkpoint.save()

    def _listen(self) -> ReplicaServer:
        host, port = self.wanted_address
        try:
            server = ReplicaServer(PrimaryOptions(host=host, port=port, username=self.replica.masteruser,
                                                  password=self.replica.password, backlog_bytes=BACKLOG_BYTES))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} for the target: {exc.strerror or exc}",
                              "give --relay-address an address of this machine and a free port") from None
        address = server.address
        assert self.checkpoint is not None
        self.checkpoint.extra = {"address": list(address), "had_masterauth": bool(self.replica.had_masterauth)}
        self.checkpoint.save()
        self.state.relay = {"address": _where(address)}
        log.info("relay listening", address=_where(address))
        return server

    # -- full syncs -----------------------------------------------------------------------------------------------

    def link_options(self) -> LinkOptions:
        # The snapshot is read live (a bounded memory queue) by the transcoder; the stream is spooled to disk.
        return LinkOptions(diskless=self.options.diskless_sync, spool_dir=self.stream_dir)

    def _first_sync(self, reason: str) -> None:
        self._full_sync(None, reason)

    def _full_sync(self, link: ReplicaLink | None, reason: str) -> None:
        """A fresh source snapshot, transcoded, sent to the target as a full sync of the relay; then streaming."""
        for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
            link = link or self.connect(None, 0, 0)
            try:
                self._snapshot(link, reason)
                break
            except LinkLostError as exc:
                link.close()
                link = None
                if attempt == SNAPSHOT_ATTEMPTS:
                    raise
                self.state.source_reconnects += 1
                log.warning("source link lost during the snapshot: a new one", error=exc.message)
        self._sync_target()

    def _snapshot(self, link: ReplicaLink, reason: str) -> None:
        assert link.sync.replid is not None
        if self.link is not None and self.link is not link:
            self.link.close()
        self.record("full", reason, link.sync.offset)
        self.link, self.replid = link, link.sync.replid
        self.state.phase, self.state.replid = "snapshot", link.sync.replid
        self.state.snapshot_keys_total = sum(self.source.identity.keyspace.values())
        self.snapshot = self._transcode(link)
        self.state.snapshot_keys_loaded = self.snapshot.keys_written

    def _transcode(self, link: ReplicaLink) -> TranscodeReport:
        """The snapshot, as it arrives, transcoded for the target into the spool file (checked whole: its checksum,
        and under --on-incompatible fail every key, before the target sees a byte of it)."""
        path = self.snapshot_path
        rdb = link.snapshot()
        try:
            stream = transcode_chunks(rdb, self.format, self.options.on_incompatible)
            with open(path, "wb") as out:
                for chunk in stream:
                    out.write(chunk)
                    self.state.snapshot_bytes = link.status().snapshot_bytes
        except IncompatibleDataError as exc:
            path.unlink(missing_ok=True)
            raise IncompatibleDataError(f"the source's snapshot holds data {self.format.label} cannot take: "
                                        f"{exc.message}", "use --on-incompatible skip or lossy (the report names "
                                        "every key); `migrate preflight` lists them beforehand") from None
        except RdbFormatError as exc:
            path.unlink(missing_ok=True)
            raise BadInputError(f"the source's snapshot is unusable: {exc.message}") from None
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise MigrationError(f"cannot write the transcoded snapshot {path}: {exc.strerror or exc}",
                                 "give --spool-dir a folder with room for the snapshot") from None
        finally:
            rdb.close()
        assert stream.report is not None
        report = stream.report
        log.info("snapshot transcoded", keys=report.keys_read, written=report.keys_written,
                 converted=sum(report.converted.values()), bytes_in=report.input_bytes,
                 bytes_out=report.output_bytes, seconds=round(report.seconds, 3))
        return report

    def _sync_target(self) -> None:
        """Send the transcoded snapshot as the relay's full sync and wait until the target has loaded it."""
        server, link = self.server, self.link
        assert server is not None and link is not None and link.sync.replid is not None
        if self.replica.attached != server.address:  # a first sync (or the replica of a killed relay)
            self.replica.attach(server.address)
        else:
            server.new_history()  # the target must not continue the history the new snapshot replaces
        self._wait_psync(server)
        sent = None
        try:
            sent = server.full_sync(file_chunks(self.snapshot_path), timeout=CONNECT_SECONDS)
            online = self._wait_online(server)
        except LinkLostError:
            online = False
        finally:
            self.snapshot_path.unlink(missing_ok=True)
        if not online:  # it reconnects by itself: _watch_target gives it a new full sync (a few times at most)
            self._dropped_syncs += 1
            why = server.status().last_error or "no reason seen"
            if self._dropped_syncs >= SNAPSHOT_ATTEMPTS:
                raise MigrationError(f"the target dropped {self._dropped_syncs} full syncs of the relay in a row "
                                     f"(last: {why})", "read the target's log: it may refuse the RDB or restart")
            self.note(f"the target dropped the relay's full sync ({why}): it is given a new one")
        else:
            self._dropped_syncs = 0
            self.state.snapshot_loads += 1
        self.synced_at = sent.offset if sent is not None else server.offset
        self.offsets = OffsetMap(self.synced_at, link.sync.offset, 0)
        self.applied = (link.sync.offset, 0)
        self.state.applied_offset = link.sync.offset
        if online:  # the source hears the target holds the snapshot only once it does
            link.ack(link.sync.offset, flush=True)
        self.translator = Translator(self.profile, policy=self.options.on_incompatible, db_map=DbMap(), source_db=0,
                                     tally=self.state.tally)
        self.writer = RespWriter(db=-1)  # after a full sync the next command selects its database
        self._away_since = None
        self.state.phase = "streaming"
        self._show()
        if sent is not None and online:
            log.info("target online", relay_offset=sent.offset, source_offset=link.sync.offset,
                     rdb_bytes=sent.rdb_bytes, seconds=round(sent.seconds, 3))

    def _wait_online(self, server: ReplicaServer) -> bool:
        """Until the target has loaded the full sync (True), or dropped it (False); --sync-timeout at most."""
        deadline = time.monotonic() + self.options.sync_timeout
        while True:
            try:
                server.wait_online(0.5)
                return True
            except MigrationError:
                state = server.status().state
                if state not in (PrimaryState.TRANSFER, PrimaryState.LOADING):
                    return False
                if time.monotonic() > deadline:
                    raise MigrationError(f"the target did not load the relay's full sync within "
                                         f"{self.options.sync_timeout:g} s (state {state.value})",
                                         "raise --sync-timeout for a large dataset, or read the target's log") from None

    def _wait_psync(self, server: ReplicaServer) -> None:
        """The target asks for its sync within seconds of REPLICAOF; when it does not, say why it cannot."""
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:
            try:
                server.wait_psync(1.0)
                return
            except MigrationError:
                if time.monotonic() > deadline:
                    replication = self.replica.replication()
                    raise MigrationError(f"the target did not ask the relay at {_where(server.address)} for its "
                                         f"sync within {CONNECT_SECONDS:g} s (its link: {replication.link})",
                                         "check that the target can reach that address (--relay-address) and read "
                                         "the target's log") from None

    # -- streaming ------------------------------------------------------------------------------------------------

    def pump(self, timeout: float = 0.2) -> int:
        try:
            handled = self._pump(timeout)
        except LinkLostError as exc:
            self.state.source_reconnects += 1
            log.warning("source link lost", error=exc.message)
            self._continue_after_link_loss(exc)
            return 0
        self._watch_target()
        return handled

    def _pump(self, timeout: float) -> int:
        link, translator, server = self.link, self.translator, self.server
        assert link is not None and translator is not None and server is not None
        if self.observer is not None:  # the cutover's grace period looks at every command
            batch = link.read_commands(READ_COMMANDS, timeout=timeout)
            if batch:
                self.observer(batch)
            handled, last = len(batch), self._forward(batch, link, translator, server)
        else:
            handled, last = self._forward_split(link, translator, server, timeout)
        if not translator.in_group:  # everything read is on the relay's stream, GETACKs the link answered included
            position = link.position
            self.offsets.record(server.offset, position.offset, position.db)
        elif last is not None:
            self.offsets.record(server.offset, *last)
        self._acknowledged(link, server)
        self.state.received_offset = link.received
        return handled

    def _forward(self, batch: list[StreamCommand], link: ReplicaLink, translator: Translator,
                 server: ReplicaServer) -> tuple[int, int] | None:
        """Translate and append to the relay's stream in one write; where the last unit finished (source offset and
        database)."""
        if not batch:
            return None
        received = link.arrived_ms(batch[0].offset)
        feed, encode = translator.feed, self.writer.encode
        parts, commands, last = [], 0, None
        for argv, offset, _ in batch:
            unit = feed(argv, offset, received)
            if unit is not None:
                last = (unit.end_offset, unit.source_db)
                if unit.commands:
                    parts.append(encode(unit))
                    commands += len(unit.commands)
        self._append(server, parts, commands)
        return last

    def _forward_split(self, link: ReplicaLink, translator: Translator, server: ReplicaServer,
                       timeout: float) -> tuple[int, tuple[int, int] | None]:
        """As _forward, with runs of commands the target takes as they are forwarded as the source's own bytes; the
        commands handled, and where the last unit finished."""
        writer = self.writer
        parts: list[bytes] = []
        commands, before = 0, translator.tally.commands
        last: tuple[int, int] | None = None
        for part in translated(link, translator, READ_COMMANDS, timeout):
            if isinstance(part, RawRun):
                db = translator.db
                parts += writer.raw(translator.target_db(db) or 0, part.data)
                commands += part.commands
                last = (part.offset, db)
            else:
                last = (part.end_offset, part.source_db)
                if part.commands:
                    parts.append(writer.encode(part))
                    commands += len(part.commands)
        self._append(server, parts, commands)
        return translator.tally.commands - before, last

    def _append(self, server: ReplicaServer, parts: list[bytes], commands: int) -> None:
        if parts:
            server.append(b"".join(parts), self.writer.db)
            self.state.tally.applied_commands += commands

    def _acknowledged(self, link: ReplicaLink, server: ReplicaServer) -> None:
        """What the target acknowledged, as a source offset, goes into the link's ACKs; ask the target for its
        offset while it has not acknowledged everything (it ACKs once a second by itself)."""
        acked = self.offsets.acknowledge(server.acked_offset)
        if acked.source > self.applied[0]:
            self.applied = (acked.source, acked.db)
            self.state.applied_offset = acked.source
            link.ack(acked.source)
        wanted = self.offsets.last.relay
        spacing = GETACK_CUTOVER_SECONDS if self.state.phase == "cutover" else GETACK_SECONDS
        now = time.monotonic()
        if wanted > server.acked_offset and self._asked < wanted and now - self._asked_at >= spacing \
                and server.status().state is PrimaryState.ONLINE:
            self._asked, self._asked_at = server.request_ack(), now

    def _continue_after_link_loss(self, exc: LinkLostError) -> None:
        """PSYNC from what was read and forwarded (it is in the relay's backlog): +CONTINUE keeps the target as it
        is; a full resync of the source (restart, failover, backlog outrun) means a full sync of the target too."""
        link = self.link
        assert link is not None
        position = link.position
        link.close()
        new = self.connect(position.replid, position.offset, position.db)
        if new.sync.partial:
            self.record("partial", f"the source link was lost ({exc.message}): {new.sync.reason}", position.offset)
            self.link = new
            return
        self._full_sync(new, f"the source link was lost ({exc.message}): {new.sync.reason}")

    # -- the target ----------------------------------------------------------------------------------------------

    def _watch_target(self) -> None:
        """Online: nothing to do. Asking for a full sync: a fresh snapshot. Away: it comes back by itself within a
        second or two (its replicationCron); away longer, look at it: a primary again (restarted: REPLICAOF is not
        saved in its configuration) is attached again; unreachable longer than RECONNECT_SECONDS ends the relay."""
        server = self.server
        assert server is not None
        status = server.status()
        self._show(status)
        if status.state is PrimaryState.ONLINE:
            self._away_since = None
            return
        if status.state is PrimaryState.PSYNC_PENDING:
            self.state.target_reconnects += 1
            self.note(f"the target asked for a full sync ({self._asked_for()}): a fresh source snapshot")
            self._full_sync(None, "the target asked for a full sync")
            return
        now = time.monotonic()
        if self._away_since is None:
            self._away_since = now
            return
        if now - self._away_since < TARGET_AWAY_SECONDS:
            return
        try:
            replication = self.replica.replication()
        except ConnectError:
            if now - self._away_since > RECONNECT_SECONDS:
                raise
            return
        if replication.role == "master":
            self.state.target_reconnects += 1
            self.note("the target came back as a primary (restarted?): REPLICAOF the relay again")
            assert self.replica.attached is not None
            self.replica.attach(self.replica.attached)
            self._away_since = now
        elif replication.primary is not None and self.replica.attached is not None and \
                replication.primary != self.replica.attached:
            raise MigrationError(f"the target now replicates from {replication.primary}, not from the relay: someone "
                                 "else ran REPLICAOF on it", "check the target, then rerun with --resume")
        elif now - self._away_since > RECONNECT_SECONDS:
            raise MigrationError(f"the target has not reconnected to the relay for {RECONNECT_SECONDS:g} s (its link: "
                                 f"{replication.link})", "read the target's log, then rerun with --resume")

    def _asked_for(self) -> str:
        hello = self.server.hello if self.server is not None else None
        if hello is None or hello.psync is None:
            return "no PSYNC seen"
        replid, offset = hello.psync
        return f"PSYNC {replid} {offset}: not in the relay's backlog"

    def _primary_of_target(self) -> str:
        replication = self.replica.replication()
        return _where(replication.primary) if replication.primary else "an unknown primary"

    # -- the cutover ----------------------------------------------------------------------------------------------

    def at_cut_point(self) -> None:
        """Without a grace period the target is promoted inside the write pause (writable before the source is; the
        writes the pause held then run on the source only: docs/relay.md)."""
        if self.options.cutover_grace == 0:
            self._promote()

    def target_writable(self) -> bool:
        return self.promoted  # a replica refuses writes (READONLY): clients are repointed once it is promoted

    def finish_cutover(self) -> None:
        if not self.promoted:
            self._drain_relay()
            self._promote()
        if self.link is not None:
            self.link.ack(self.applied[0], flush=True)

    def _drain_relay(self) -> None:
        """Everything forwarded is acknowledged by the target (the grace period's writes included)."""
        server, link = self.server, self.link
        assert server is not None and link is not None
        server.wait_ack(server.request_ack(), timeout=max(10.0, self.options.max_pause))
        self._acknowledged(link, server)

    def _promote(self) -> None:
        self.masterauth = self.replica.detach()
        self.promoted = True
        self.note(f"the target was made a primary (REPLICAOF NO ONE); its masterauth {self.masterauth}")

    # -- reports --------------------------------------------------------------------------------------------------

    def _show(self, status: Any = None) -> None:
        server = self.server
        if server is None:
            return
        status = status or server.status()
        self.state.relay = {"address": _where(server.address), "target": status.state.value,
                            "relay_offset": status.offset, "target_acked_offset": status.acked_offset,
                            "target_full_syncs": status.full_syncs, "target_partial_syncs": status.partial_syncs,
                            "promoted": self.promoted}

    def _report(self) -> RelayReport:
        server = self.server
        assert server is not None
        status = server.status()
        return RelayReport(_where(server.address), status.full_syncs, status.partial_syncs, snapshot_summary(
            self.snapshot), status.offset - self.synced_at, self.promoted, self.masterauth)

    def db_reports(self) -> tuple[DbReport, ...]:
        return db_reports(self.snapshot) if self.snapshot is not None else ()

    # -- the end ----------------------------------------------------------------------------------------------

    @property
    def resumable(self) -> bool:
        """A first run that never touched the target has nothing to resume: it starts over (its checkpoint goes)."""
        return self.options.resume or self.touched

    @property
    def touched(self) -> bool:
        return self.replica.attached is not None or self.promoted or self.state.snapshot_loads > 0

    def failed(self, exc: BaseException) -> None:
        """The target is never left a replica of a relay that is going away without the error saying so."""
        if self.replica.attached is None:
            text = "" if self.touched else "the target was not touched"
        else:
            done, outcome = self.replica.detach_quietly()
            text = (f"the target was made a primary again (REPLICAOF NO ONE; masterauth {outcome}): its data is "
                    f"partial (the source as of offset {self.applied[0]}); rerun with --resume for a new full sync"
                    if done else outcome)
        if text:
            self.state.notes.append(text)
            if isinstance(exc, MigrateError):
                exc.message = f"{exc.message}; {text}"

    def close(self) -> None:
        super().close()
        if self.replica.attached is not None:  # an unexpected end (not a MigrateError): still not left behind
            done, outcome = self.replica.detach_quietly()
            log.warning("relay ended: target made a primary again" if done else outcome)
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.close()
        if self.checkpoint is not None and self.state.state != "done":
            with contextlib.suppress(ConfigError):
                self.checkpoint.save() if self.resumable else self.checkpoint.remove()
        self.snapshot_path.unlink(missing_ok=True)
        shutil.rmtree(self.stream_dir, ignore_errors=True)


def snapshot_summary(report: TranscodeReport | None) -> dict[str, Any]:
    if report is None:
        return {}
    return {"keys_read": report.keys_read, "keys_written": report.keys_written,
            "passed_through": report.passed_through, "converted": dict(report.converted),
            "changed": report.changed.total, "skipped": report.skipped.total, "empty": report.empty.total,
            "expired": report.expired.total, "input_version": report.input_version,
            "output_version": report.output_version, "input_bytes": report.input_bytes,
            "output_bytes": report.output_bytes, "seconds": report.seconds,
            "functions": list(report.functions), "functions_dropped": list(report.functions_dropped)}


def db_reports(report: TranscodeReport) -> tuple[DbReport, ...]:
    """The snapshot's keys per database, in run's report form (routes: byte for byte, or converted)."""
    def issues(named: Any, db: int) -> tuple[KeyIssue, ...]:
        return tuple(KeyIssue(n.db, n.key, f"{n.type_name}: {n.detail}") for n in named.listed if n.db == db)

    return tuple(DbReport(d.db, d.db, d.keys_written, 0, 0, {}, {"byte for byte": d.keys_written - d.converted,
                                                                 "converted": d.converted},
                          issues(report.skipped, d.db), issues(report.changed, d.db), ())
                 for d in report.dbs)


__all__ = ["BACKLOG_BYTES", "CONNECT_SECONDS", "RelayJob", "db_reports", "refuse_tls_replication", "relay",
           "relay_address"]
