"""`twin sim …`: list, describe and run simulators, list runs and compare them (issue 12)."""

from __future__ import annotations

import typer

from twin.cli import app

sim_app = typer.Typer(no_args_is_help=True, help="simulations: run a simulator on a branch or scenario, compare runs")
app.add_typer(sim_app, name="sim")
