"""``totd-faith config``: validate, show and import configurations."""

from __future__ import annotations

from typing import Any

import click

from totd_faith.cli.common import Group, config_option, load_config, override_flags, overrides_from
from totd_faith.config import load_file, to_toml


@click.group(cls=Group)
def config() -> None:
    """Validate, show and import configuration files."""


@config.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate FILE; print 'ok' or the key and the problem."""
    load_file(file)
    click.echo(f"{file}: ok")


@config.command()
@config_option
@override_flags()
@click.option("--annotated", is_flag=True, help="Explain every key in comments.")
def show(config_path: str | None, annotated: bool, **flags: Any) -> None:
    """Print the effective configuration (defaults < FILE < flags) as TOML."""
    click.echo(
        to_toml(load_config(config_path, overrides_from(flags)), annotated=annotated), nl=False
    )
