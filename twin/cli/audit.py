"""`twin audit …`: the store's hash-chained audit log (issue 14; docs/security_audit.md).

``verify`` checks every record's hash, the chain and the signed checkpoints, against kept copies of the public key
and checkpoints when given (exit 0: intact; exit 1: the problem, its seq and line); ``show`` lists records by user,
action and time; ``keygen`` makes the Ed25519 signing key (outside the store) and ``checkpoint`` signs the tail now.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from twin.cli import StoreOpt, _open, app, console
from twin.errors import Conflict

audit_app = typer.Typer(no_args_is_help=True, help="the audit log: verify its chain and checkpoints, show records, "
                                                   "manage the checkpoint signing key")
app.add_typer(audit_app, name="audit")

_KEY = typer.Option(None, "--key", help="private signing key (default $TWIN_AUDIT_KEY, else "
                                        "<secrets dir>/audit-<store>.key; never inside the store)")


def _client() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "?"
    return f"cli:{user}@{socket.gethostname()}"


@audit_app.command("verify")
def verify(
    store: Path = StoreOpt,
    public_key: list[Path] = typer.Option(None, "--public-key", help="a copy of the public key kept outside the "
                                          "store (default: <store>/audit/public.pem); repeatable after a rotation"),
    checkpoints: list[Path] = typer.Option(None, "--checkpoints", help="a kept copy of checkpoints.jsonl "
                                                                      "(repeatable), checked besides the store's"),
    fingerprint: str = typer.Option(None, "--fingerprint", help="the public key's kept SHA-256 fingerprint (hex)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
):
    """Check every record's hash, the chain, the seqs and every signed checkpoint; exit 1 naming the first
    edited, missing, inserted or reordered record (seq and line), a cut tail or a rewritten log."""
    from twin.security.audit import AuditLog

    report = AuditLog(_open(store).root).verify(public_key=public_key or None, checkpoints=checkpoints or None,
                                                kept_fingerprint=fingerprint)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        out = console if report.ok else Console(stderr=True, soft_wrap=True)
        out.print(("[bold green]" if report.ok else "[bold red]") + escape(str(report)) + "[/]",
                  highlight=False)
        if report.ok and report.key:
            out.print(f"  key {report.key}", highlight=False)
        for w in report.warnings:
            out.print(f"  note: {w}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("show")
def show(
    store: Path = StoreOpt,
    user: str = typer.Option(None, "--user", "-u", help="only this principal"),
    action: str = typer.Option(None, "--action", "-a", help="only this action: read, export, write, admin, "
                                                            "login-failed, …"),
    since: str = typer.Option(None, "--since", help="from this time on: ISO 8601 or a span back from now (24h, 7d)"),
    until: str = typer.Option(None, "--until", help="before this time: ISO 8601 or a span back from now"),
    limit: int = typer.Option(100, "--limit", "-n", min=0, help="at most this many: the newest (0: no limit)"),
    oldest: bool = typer.Option(False, "--oldest", help="the oldest matching records instead of the newest"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one record a line"),
):
    """Records of the audit log, oldest first: the newest --limit of those matching (or with --oldest the first)."""
    from twin.security.audit import AuditLog, parse_time

    log = AuditLog(_open(store).root)
    filters = {"principal": user, "action": action, "since": parse_time(since), "until": parse_time(until)}
    if not limit:
        records = log.read(**filters)
    elif oldest:
        records = log.read(limit=limit, **filters)
    else:
        records = log.tail(limit, **filters)
    if as_json:
        for rec in records:
            sys.stdout.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
        return
    t = Table("seq", "time (UTC)", "principal", "action", "target", "client", "size", "result")
    n = 0
    for rec in records:
        target = rec.get("target")
        shown = target if isinstance(target, str) else json.dumps(target, ensure_ascii=False)
        t.add_row(str(rec["seq"]), rec["time"].replace("T", " ")[:19], rec["principal"], rec["action"],
                  shown if len(shown) <= 80 else shown[:79] + "…", rec.get("client") or "",
                  "" if rec.get("size") is None else str(rec["size"]), rec.get("result") or "")
        n += 1
    if n:
        console.print(t)
    else:
        console.print("no audit records match")


@audit_app.command("checkpoint")
def checkpoint(
    store: Path = StoreOpt, key: Path = _KEY,
    copy_to: Path = typer.Option(None, "--copy-to", help="also append the checkpoint to this kept file (outside "
                                                         "the store)"),
):
    """Sign the log's current tail now (servers also sign every 1,000 records and every hour)."""
    from twin.security.audit import AuditLog, canonical, default_key_path, load_signing_key

    root = _open(store).root
    entry = AuditLog(root).checkpoint(load_signing_key(key or default_key_path(root)))
    if copy_to is not None:
        with open(copy_to, "ab") as f:
            f.write(canonical(entry) + b"\n")
    console.print(f"checkpoint {entry['n']}: seq {entry['seq']} ({entry['count']} records), hash {entry['hash']}",
                  highlight=False)
    if copy_to is not None:
        console.print(f"  also appended to {copy_to}", highlight=False)


@audit_app.command("keygen")
def keygen(
    store: Path = StoreOpt, key: Path = _KEY,
    force: bool = typer.Option(False, "--force", help="replace an existing key (a rotation: the store's old "
                                                      "public key and checkpoints move to audit/retired/)"),
):
    """Make the Ed25519 key that signs checkpoints: the private key outside the store (0600), the public key in
    <store>/audit/public.pem. Keep a copy of public.pem and its fingerprint somewhere the store's writers cannot
    reach: `twin audit verify --public-key COPY` then detects even a rewrite of the whole log and its key."""
    from twin.security.audit import (
        AuditLog,
        default_key_path,
        fingerprint,
        generate_key,
        load_public_key,
        load_signing_key,
    )

    root = _open(store).root
    path = (key or default_key_path(root)).expanduser()
    log = AuditLog(root)
    if log.public_path.is_file() and not force:  # refuse before making a key that could not be installed
        have = fingerprint(load_public_key(log.public_path))
        raise Conflict(f"{log.public_path} holds key {have[:16]}… already; pass --force to rotate to a new key")
    made = force or not path.exists()
    private = generate_key(path, force=force) if made else load_signing_key(path)  # a kept key: install it
    public = log.install_public_key(private.public_key(), force=force)
    fp = fingerprint(private.public_key())
    log.append("local", "admin", {"op": "audit.keygen", "fingerprint": fp, "new_key": made, "rotated": force},
               client=_client(), size=None)
    log.checkpoint(private)
    state = "new" if made else "existing"
    console.print(f"private key: [bold]{path}[/] ({state}; 0600; keep it off the store's disk and back it up)",
                  highlight=False)
    console.print(f"public key:  {public}", highlight=False)
    console.print(f"fingerprint: [bold]{fp}[/]", highlight=False)
    console.print("keep a copy of the public key and this fingerprint elsewhere (and copies of "
                  "audit/checkpoints.jsonl); verify against them with `twin audit verify --public-key COPY.pem "
                  "--checkpoints COPY.jsonl`", highlight=False)
