"""`twin user …`: principals (users and service accounts) with roles, clearance and an area limit, and their API
keys. Keys are printed once, when made; the store keeps only their hashes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from twin.cli import StoreOpt, _open, app, console
from twin.config import get_settings

user_app = typer.Typer(no_args_is_help=True, help="users and service accounts: roles, clearance, area, API keys")
app.add_typer(user_app, name="user")

_JSON = typer.Option(False, "--json", help="print JSON")
_ROLES = "viewer | gis | analyst | admin"
_LEVELS = "public | internal | confidential | secret"


def _show_key(name: str, key: str) -> None:
    console.print(f"API key for [bold]{name}[/] (shown once; keep it secret):", highlight=False)
    console.print(key, highlight=False, soft_wrap=True)


@user_app.command("add")
def add(
    name: str = typer.Argument(..., help="user or service name (lowercase letters, digits, - and _)"),
    role: list[str] = typer.Option(..., "--role", "-r", help=f"role (repeatable): {_ROLES}"),
    clearance: str = typer.Option("public", "--clearance", "-c", help=f"highest level it may read: {_LEVELS}"),
    area: Path = typer.Option(None, "--area", help="GeoJSON polygon (store CRS) limiting what it sees"),
    service: bool = typer.Option(False, "--service", help="a service account rather than a person"),
    description: str = typer.Option("", "--description", help="who or what this is"),
    store: Path = StoreOpt,
):
    """Add a principal and print its first API key (once)."""
    from twin.security import principals as P

    s = _open(store)
    p, key = P.add(s, name, role, clearance, area=P.read_area(area) if area else None,
                   kind="service" if service else "user", description=description, author=get_settings().author)
    console.print(f"added {p.kind.value} [bold]{p.name}[/]: roles {', '.join(r.value for r in p.roles)}, clearance "
                  f"{p.clearance.value}{', area-limited' if p.area else ''}", highlight=False)
    _show_key(p.name, key)


@user_app.command("list")
def list_(store: Path = StoreOpt, as_json: bool = _JSON):
    """List principals (never their keys, only key ids)."""
    from twin.security import principals as P

    ps = P.principals(_open(store))
    if as_json:
        console.print_json(json.dumps([P.summary(p) for p in ps]))
        return
    t = Table("name", "kind", "roles", "clearance", "area", "status", "keys")
    for p in ps:
        live = [k.id for k in p.keys if not k.revoked]
        t.add_row(p.name, p.kind.value, ", ".join(r.value for r in p.roles), p.clearance.value,
                  "limited" if p.area else "-", "disabled" if p.disabled else "enabled",
                  f"{len(live)} live ({', '.join(live)})" if live else "none")
    console.print(t)


@user_app.command("disable")
def disable(name: str = typer.Argument(..., help="principal name"), store: Path = StoreOpt):
    """Disable a principal: its keys and tokens stop working at once."""
    from twin.security import principals as P

    P.update(_open(store), name, disabled=True, author=get_settings().author, message=f"disable principal {name}")
    console.print(f"disabled {name}", highlight=False)


@user_app.command("enable")
def enable(name: str = typer.Argument(..., help="principal name"), store: Path = StoreOpt):
    """Enable a disabled principal again."""
    from twin.security import principals as P

    P.update(_open(store), name, disabled=False, author=get_settings().author, message=f"enable principal {name}")
    console.print(f"enabled {name}", highlight=False)


@user_app.command("grant")
def grant(
    name: str = typer.Argument(..., help="principal name"),
    role: list[str] = typer.Option(None, "--role", "-r", help=f"new roles (repeatable; replace the old): {_ROLES}"),
    clearance: str = typer.Option(None, "--clearance", "-c", help=f"new clearance: {_LEVELS}"),
    area: Path = typer.Option(None, "--area", help="new area limit (GeoJSON polygon, store CRS)"),
    no_area: bool = typer.Option(False, "--no-area", help="remove the area limit"),
    store: Path = StoreOpt,
):
    """Change a principal's roles, clearance or area limit."""
    from twin.errors import BadInput
    from twin.security import principals as P

    if area is not None and no_area:
        raise BadInput("--area and --no-area exclude each other")
    changes: dict = {"roles": role or None, "clearance": clearance}
    if area is not None:
        changes["area"] = P.read_area(area)
    elif no_area:
        changes["area"] = None
    p = P.update(_open(store), name, author=get_settings().author, **changes)
    console.print(f"{p.name}: roles {', '.join(r.value for r in p.roles)}, clearance {p.clearance.value}"
                  f"{', area-limited' if p.area else ''}", highlight=False)


@user_app.command("key")
def key(
    name: str = typer.Argument(..., help="principal name"),
    revoke: str = typer.Option(None, "--revoke", help="revoke the key with this id instead of making one"),
    store: Path = StoreOpt,
):
    """Make another API key for a principal (printed once), or revoke one by its id."""
    from twin.security import principals as P

    s = _open(store)
    if revoke:
        P.revoke_key(s, name, revoke, author=get_settings().author)
        console.print(f"revoked key {revoke} of {name}", highlight=False)
        return
    _show_key(name, P.new_key(s, name, author=get_settings().author))
