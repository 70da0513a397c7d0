"""``totd-faith serve``: placeholder until its issue lands (owned by its helper)."""

from __future__ import annotations

import click

from totd_faith.cli.common import UserError


@click.command()
def serve() -> None:
    """Not available yet."""
    raise UserError("'totd-faith serve' is not implemented yet")
