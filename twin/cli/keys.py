"""`twin keys …`: the key that encrypts the store's confidential and secret rows at rest (issue 14;
docs/security_encryption.md). The key lives outside the store (``TWIN_KEY`` or ``TWIN_KEY_FILE``); the store keeps
only its id. No command prints a key."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from twin.cli import StoreOpt, _open, app, console
from twin.config import get_settings

keys_app = typer.Typer(no_args_is_help=True, help="the encryption key of confidential and secret data: generate, "
                                                  "rotate, status")
app.add_typer(keys_app, name="keys")


def _key(path: Path | None, what: str):
    """The key of a file, else of TWIN_KEY / TWIN_KEY_FILE; none at all is a usage error."""
    from twin.errors import BadInput
    from twin.store.crypt import Key

    key = Key.load(path) if path is not None else Key.from_env()
    if key is None:
        raise BadInput(f"no {what} key: pass its file, or set TWIN_KEY or TWIN_KEY_FILE")
    return key


@keys_app.command("generate")
def generate(file: Path = typer.Argument(..., help="the key file to create (it must not exist); keep it outside "
                                                   "the store")):
    """Write a new random 256-bit key (base64) to FILE, readable by its owner only (0600); print its id."""
    from twin.errors import Conflict
    from twin.store.crypt import Key

    key = Key.generate()
    from twin.store.files import write_private

    try:
        write_private(file, (key.text() + "\n").encode(), replace=False)
    except FileExistsError:
        raise Conflict(f"{file} exists already: a key file is never overwritten (rotate to a new file)") from None
    console.print(f"wrote key [bold]{key.id}[/] to {file} (mode 0600). Use it with TWIN_KEY_FILE={file}; without "
                  "it the store's confidential data cannot be read: keep a copy somewhere safe.", highlight=False)


@keys_app.command("status")
def status(store: Path = StoreOpt, as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Which key the store's encrypted data uses (its id), how much is encrypted, and whether TWIN_KEY or
    TWIN_KEY_FILE holds that key."""
    info = _open(store).encryption_status()
    if as_json:
        typer.echo(json.dumps(info))
        return
    if info["key_id"] is None:
        console.print("nothing is encrypted: the store has never had a key (confidential and secret rows are "
                      "encrypted from the first commit made with TWIN_KEY or TWIN_KEY_FILE set)", highlight=False)
    else:
        console.print(f"encrypted with key [bold]{info['key_id']}[/]: {info['files']} file(s), {info['rows']} row(s), "
                      f"{info['bytes']:,} bytes; levels {', '.join(info['levels']) or '-'}", highlight=False)
    if info["your_key_id"] is None:
        console.print("no key set (TWIN_KEY / TWIN_KEY_FILE): only public and internal data can be read",
                      highlight=False)
    elif info["matches"] is False:
        console.print(f"[bold red]the key set has id {info['your_key_id']}: it does not match[/]", highlight=False)
    else:
        console.print(f"the key set has id {info['your_key_id']}" + (": it matches" if info["matches"] else ""),
                      highlight=False)


@keys_app.command("rotate")
def rotate(
    new: Path = typer.Option(..., "--new", help="the new key file (`twin keys generate FILE`)"),
    old: Path = typer.Option(None, "--old", help="the key file in use now (default: TWIN_KEY / TWIN_KEY_FILE)"),
    store: Path = StoreOpt,
):
    """Re-encrypt every encrypted file with the new key, switching atomically (a crash leaves one key or the other
    in force, never a mix); the old key stops working. Set TWIN_KEY_FILE to the new file afterwards."""
    old_key, new_key = _key(old, "old"), _key(new, "new")
    n = _open(store).rotate_key(old_key, new_key, author=get_settings().author)
    console.print(f"re-encrypted {n} file(s): key {old_key.id} → [bold]{new_key.id}[/]. Point TWIN_KEY_FILE at "
                  f"{new} (and restart servers); key {old_key.id} no longer reads this store.", highlight=False)
