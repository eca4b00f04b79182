"""Verbs load lazily: `migrate --help`/`--version` import no verb, a verb imports only its own module, and the
top-level listing (read from the VERBS table) is the one click writes from the real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from migrate.cli import VERBS, cli
from migrate.cli.lazy import LazyGroup, LazyVerb

VERB_MODULES = {name: verb.target.partition(":")[0] for name, verb in VERBS.items()}
WIDTHS = (60, 80, 100, 200)

PROBE = """
import json, sys
from migrate.cli import cli, run_cli
code = run_cli(sys.argv[1:])
assert "run" in cli.list_commands(None)  # listing the names loads nothing
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_modules(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return set(report["modules"])


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_top_level_imports_no_verb(args):
    modules = loaded_modules(*args)
    assert not modules & set(VERB_MODULES.values())
    assert "redis" not in modules and "structlog" not in modules


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_verb_imports_only_its_own_module(verb):
    modules = loaded_modules(verb, "--help")
    assert VERB_MODULES[verb] in modules
    assert not modules & {module for name, module in VERB_MODULES.items() if name != verb}


@pytest.mark.parametrize("name", sorted(VERBS))
def test_table_help_is_the_commands_own(name):
    command = cli.get_command(None, name)
    assert VERBS[name].help == (command.help or "").partition("\n\n")[0]
    stand_in = click.Command(name, help=VERBS[name].help)
    for limit in range(20, 200, 7):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


@pytest.mark.parametrize("width", WIDTHS)
def test_lazy_listing_is_clicks_listing(width):
    """A fresh process lists from the table; here every verb is loaded, so click lists from the commands."""
    loaded = {name: cli.get_command(None, name) for name in VERBS}
    eager = click.Group("migrate", commands=loaded, params=cli.params, help=cli.help,
                        context_settings=cli.context_settings)
    formatter_width = max(min(width, cli.context_settings["max_content_width"]) - 2, 50)  # as click derives it
    expected = CliRunner().invoke(eager, ["--help"], terminal_width=formatter_width, prog_name="migrate").output
    env = {**os.environ, "COLUMNS": str(width)}
    lazy = subprocess.run([sys.executable, "-m", "migrate", "--help"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert lazy.returncode == 0
    assert lazy.stdout == expected
    assert "Commands:" in expected and all(f"  {name} " in expected for name in VERBS)


def test_unknown_verb_still_suggests(capsys):
    from migrate.cli import run_cli

    assert run_cli(["verif"]) == 2
    assert "Did you mean 'verify'?" in capsys.readouterr().err


def test_lazy_group_loads_on_lookup_and_keeps_added_commands():
    group = LazyGroup("g", verbs={"identify": VERBS["identify"], "bad": LazyVerb("migrate:__version__", "Not one.")})
    extra = click.Command("extra", help="Added the usual way.")
    group.add_command(extra)
    assert group.list_commands(None) == ["bad", "extra", "identify"]
    assert group.get_command(None, "nosuch") is None
    assert group.get_command(None, "extra") is extra
    assert group.get_command(None, "identify") is cli.get_command(None, "identify")
    with pytest.raises(TypeError, match="not a click command"):
        group.get_command(None, "bad")
