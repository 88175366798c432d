"""`twin scenario …`: what-if scenarios as branches holding edits (issue 12)."""

from __future__ import annotations

import typer

from twin.cli import app

scenario_app = typer.Typer(no_args_is_help=True, help="scenarios: branches holding edits, diffed with their base")
app.add_typer(scenario_app, name="scenario")
