"""``totd-faith relay``: placeholder until its issue lands (owned by its helper)."""

from __future__ import annotations

import click

from totd_faith.cli.common import UserError


@click.command()
def relay() -> None:
    """Not available yet."""
    raise UserError("'totd-faith relay' is not implemented yet")
