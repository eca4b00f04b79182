"""The `migrate` command line: a thin click layer over the library; one handler turns errors into exit codes."""

from __future__ import annotations

import gc
import sys
import traceback

import click

from migrate import __version__
from migrate.cli.lazy import LazyGroup, LazyVerb
from migrate.errors import ExitCode, MigrateError

# One line per verb: its command ("module:attribute", imported only when the verb is used) and the first paragraph of
# its help, shown by `migrate --help` without importing it (tests/test_cli_lazy.py keeps the two equal).
VERBS = {
    "identify": LazyVerb("migrate.cli.identify:identify_cmd",
                         "Detect product, version and RDB version of the source and/or target."),
    "preflight": LazyVerb("migrate.cli.preflight:preflight_cmd",
                          "Check source and target (read-only) and say what will break, and which strategy fits. "
                          "Exit 5 on blockers."),
    "verify": LazyVerb("migrate.cli.verify:verify_cmd",
                       "Prove parity between source and target, both directions, key by key (exit 5 on divergence)."),
    "convert": LazyVerb("migrate.cli.convert:convert_cmd",
                        "Rewrite an RDB file for another release (exit 5 when --on-incompatible fail meets a key it "
                        "cannot hold)."),
    "run": LazyVerb("migrate.cli.run:run_cmd",
                    "Copy the data from the source into the target (exit 5 if keys were left busy or --verify found "
                    "divergence)."),
    "cutover": LazyVerb("migrate.cli.cutover:cutover_cmd",
                        "Ask a running sync or relay (its --status-file) to cut over now, and wait until it is done."),
}


@click.group(cls=LazyGroup, verbs=VERBS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="migrate")
@click.option("--log-format", type=click.Choice(["auto", "human", "plain", "json"]), default="auto",
              envvar="MIGRATE_LOG_FORMAT", help="Log format on stderr [default: auto].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              envvar="MIGRATE_LOG_LEVEL", help="Log level [default: info].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="MIGRATE_CONFIG",
              help="Config file [default: ./migrate.toml if present].")
@click.option("--traceback", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, log_format: str, log_level: str, config_file: str | None, traceback: bool) -> None:
    """Migrate from Redis to Valkey: check before (preflight), move the data (run), prove parity (verify)."""
    # Imported here, not at the top: `migrate --help` and `--version` never get this far and need neither.
    from migrate.cli.params import CliState
    from migrate.logs import configure

    configure(log_format, log_level)
    ctx.obj = CliState(log_format, config_file, traceback)


# The verbs allocate many short-lived containers per key (replies, per-key readers, tuples). With CPython's default
# thresholds (a collection every 700 allocations) the cyclic collector took 15-25% of `verify --level full`'s Python
# time on collections (measured: bench/RESULTS.md). Our objects rarely form cycles, so the process collects 100x less
# often (a bounded amount of garbage: at most ~100,000 young objects wait) and start-up objects leave its way.
GC_THRESHOLDS = (100_000, 50, 100)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.exit(run_cli(args))


def run_cli(args: list[str]) -> int:
    """Run the CLI and map every outcome to a documented exit code."""
    show_traceback = "--traceback" in args
    try:
        cli.main(args=args, prog_name="migrate", standalone_mode=False)
        return ExitCode.OK
    except MigrateError as exc:
        if show_traceback:
            traceback.print_exc()
        if exc.exit_code != ExitCode.PROBLEMS or exc.message:
            click.echo(f"error: {exc.one_line()}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("error: interrupted (hint: rerun with --resume where the verb supports it)", err=True)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        if show_traceback:
            traceback.print_exc()
        click.echo(f"error: internal error: {type(exc).__name__}: {exc} (hint: rerun with --traceback and report it)",
                   err=True)
        return int(ExitCode.MIGRATION)
