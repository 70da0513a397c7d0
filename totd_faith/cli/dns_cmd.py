"""``totd-faith dns``: placeholder until its issue lands (owned by its helper)."""

from __future__ import annotations

import click

from totd_faith.cli.common import UserError


@click.command()
def dns() -> None:
    """Not available yet."""
    raise UserError("'totd-faith dns' is not implemented yet")
