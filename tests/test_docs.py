"""README.md stays true: every exit code and every command is documented, every command has help text."""

from __future__ import annotations

import re
from pathlib import Path

from migrate.cli import cli
from migrate.errors import ExitCode

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_exit_code_is_in_the_readme_table():
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", README, flags=re.M)}
    assert documented == {int(code) for code in ExitCode}


def test_every_command_is_documented_with_an_example():
    for name, command in cli.commands.items():
        assert command.help, f"`migrate {name}` has no help text"
        assert re.search(rf"^migrate {name} ", README, flags=re.M), f"README has no example of `migrate {name}`"
