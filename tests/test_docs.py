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
    for name in cli.list_commands(None):
        command = cli.get_command(None, name)
        assert command is not None and command.help, f"`migrate {name}` has no help text"
        assert re.search(rf"^migrate {name} ", README, flags=re.M), f"README has no example of `migrate {name}`"


def test_readme_library_example_runs(servers, capsys):
    """The README's Python example, run as written against a real Redis 8.0 source and Valkey 8.1 target."""
    from fixtures.dataset import populate

    source, target = servers.get("redis-8.0.2"), servers.get("valkey-8.1")
    populate(source.client())
    code = re.search(r"```python\n(.*?)```", README, flags=re.S)
    assert code, "README has no python example"
    text = code.group(1).replace("redis://127.0.0.1:6379/0", source.url).replace("redis://127.0.0.1:6380/0", target.url)
    exec(compile(text, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("False ['COMMANDS_UNSUPPORTED', 'HFE_UNSUPPORTED'] replay")
    assert out[-1] == "True"


def test_readme_option_tables_are_the_declared_options():
    """Each table between <!-- options:VERB --> markers is what the options dataclasses declare (run
    scripts/readme-options after changing an option)."""
    from migrate.cli.params import option_table

    blocks = dict(re.findall(r"<!-- options:(\w+) -->\n(.*?)\n<!-- /options -->", README, flags=re.S))
    assert set(blocks) == {"common", "preflight", "run", "cutover", "verify"}
    for verb, table in blocks.items():
        assert table == option_table(verb), f"README option table of {verb} is stale: run scripts/readme-options"


def test_readme_rights_tables_are_the_declared_rights():
    from migrate.rights import RIGHTS, rights_table

    blocks = dict(re.findall(r"<!-- rights:(\w+) -->\n(.*?)\n<!-- /rights -->", README, flags=re.S))
    assert set(blocks) == set(RIGHTS)
    for verb, table in blocks.items():
        assert table == rights_table(verb), f"README rights table of {verb} is stale: run scripts/readme-options"
