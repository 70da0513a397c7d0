"""``totd-faith setup``: placeholder until its issue lands (owned by its helper)."""

from __future__ import annotations

import click

from totd_faith.cli.common import UserError


@click.command()
def setup() -> None:
    """Not available yet."""
    raise UserError("'totd-faith setup' is not implemented yet")
