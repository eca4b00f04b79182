"""`migrate convert IN OUT`: resolve the options, call migrate.convert.convert, print the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from migrate.cli.params import ReportOptions, emit, options, resolve_for
from migrate.config import common_config
from migrate.convert import ConvertConfig, ConvertOptions, convert
from migrate.convert.report import render
from migrate.settings import build


@click.command("convert")
@click.argument("input_file", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output_file", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@options(ConvertOptions)
@click.pass_context
def convert_cmd(ctx: click.Context, /, input_file: Path, output_file: Path, **flags: Any) -> None:
    """Rewrite an RDB file for another release (exit 5 when --on-incompatible fail meets a key it cannot hold)."""
    values = resolve_for(ctx, "convert", flags, ConvertOptions)
    config = ConvertConfig(common_config(values), build(ConvertOptions, values, input=input_file, output=output_file))
    result = convert(config)
    report: ReportOptions = build(ReportOptions, values)
    emit(render(result, report.format), report.output)
