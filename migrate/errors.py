"""One exception hierarchy: every user-facing failure carries its exit code and a hint."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README.md, "Exit codes")."""

    OK = 0
    CONFIG = 1  # usage or configuration error
    USAGE = 2  # reserved by click for command-line usage errors
    CONNECTION = 3  # cannot connect, authenticate or negotiate TLS
    MIGRATION = 4  # a migration step failed (target refused a write, OOM, permission denied)
    PROBLEMS = 5  # preflight found blockers, or verification found divergence
    BAD_INPUT = 6  # an input file (RDB, AOF, checkpoint) is corrupt or unreadable
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


class MigrateError(Exception):
    """Base of every error the CLI reports as one line: `error: <message> (hint: <hint>)`."""

    exit_code: ExitCode = ExitCode.CONFIG
    default_hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(MigrateError):
    exit_code = ExitCode.CONFIG
    default_hint = "see `migrate --help` and README.md"


class ConnectError(MigrateError):
    exit_code = ExitCode.CONNECTION
    default_hint = "check host, port and that the server is running"


class AuthError(ConnectError):
    default_hint = "check the user name and password in the URL (or MIGRATE_*_URL)"


class TlsError(ConnectError):
    default_hint = "check --tls-ca-file / --tls-cert-file / --tls-key-file, or the server's TLS port"


class MigrationError(MigrateError):
    exit_code = ExitCode.MIGRATION
    default_hint = "see the log above for what failed"


class PermissionDeniedError(MigrationError):
    default_hint = "grant the ACL user the command named, or use a user with more rights"


class TargetNotEmptyError(MigrationError):
    default_hint = "use --replace to overwrite keys, or --flush-target --yes to empty the target first"


class TargetOutOfMemoryError(MigrationError):
    default_hint = "raise the target's maxmemory or free memory, then run again"


class ValueTooBigError(MigrationError):
    """The target refused a value for its size (`proto-max-bulk-len` limits every string and element)."""

    default_hint = "raise proto-max-bulk-len on the target, or rerun with --on-incompatible skip to leave such keys out"


class IncompatibleDataError(MigrationError):
    default_hint = "use --on-incompatible skip or lossy to continue; run `migrate preflight` for details"


class BadInputError(MigrateError):
    exit_code = ExitCode.BAD_INPUT
    default_hint = "the file is corrupt, truncated or not of the expected format"


class ProblemsFound(MigrateError):
    """Checks or verification found problems: the report was printed, the exit code says so."""

    exit_code = ExitCode.PROBLEMS
    default_hint = ""


class Interrupted(MigrateError):
    exit_code = ExitCode.INTERRUPTED
    default_hint = "rerun with --resume to continue"
