"""Where a demo city goes: each size and seed has its own folder and store, and a demo never merges into a folder or
store that holds another city (a medium demo ingested over the small one would mix two cadastres)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from twin.errors import Conflict

DEFAULT_SEED = 7
_MESSAGE = re.compile(r"^ingest demo city \((?P<size>[a-z]+), seed (?P<seed>\d+)\)$")


def ingest_message(size: str, seed: int) -> str:
    """The message of a demo's ingest commit; :func:`check_store` reads it back to tell which demo a store holds."""
    return f"ingest demo city ({size}, seed {seed})"


def suffix(size: str, seed: int) -> str:
    """'' for the default demo (small, seed 7), else ``-<size>`` and ``-seed<N>`` for a seed other than 7."""
    parts = ([size] if size != "small" else []) + ([f"seed{seed}"] if seed != DEFAULT_SEED else [])
    return "".join(f"-{p}" for p in parts)


def default_path(base: Path, size: str, seed: int) -> Path:
    """The default folder or store of a demo: ``demo-city`` → ``demo-city-medium``, ``twin-store-seed8``, …"""
    return base.with_name(base.name + suffix(size, seed))


def _what(size: str, seed: int) -> str:
    return f"the {size} demo city (seed {seed})"


def check_folder(out: Path, size: str, seed: int) -> None:
    """Refuse to write the demo into a folder that holds another demo or anything else; the same demo is
    regenerated in place (byte-identical)."""
    if not out.exists() or not any(out.iterdir()):
        return
    manifest = out / "manifest.json"
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise Conflict(f"{out}: the folder is not empty and holds no demo city; pass --out with an empty "
                       "or new folder") from None
    if (m.get("size"), m.get("seed")) != (size, seed):
        raise Conflict(f"{out}: the folder holds {_what(m.get('size'), m.get('seed'))}, not {_what(size, seed)}; "
                       f"pass another --out (the default for this one is "
                       f"{default_path(Path('demo-city'), size, seed)}) or delete the folder")


def check_store(store: Path, size: str, seed: int) -> None:
    """Refuse to ingest the demo into a store that holds another demo or other data."""
    from twin.store import Store, StoreError

    try:
        s = Store(store)
    except StoreError:
        return  # no store yet (or not one: Store.init says so)
    log = s.log()
    if not log:
        return
    seen = [m.groupdict() for c in log for m in [_MESSAGE.match(c.message)] if m]
    if not seen:
        raise Conflict(f"{store}: the store holds data other than a demo city; {_what(size, seed)} goes to "
                       "its own store: pass --store with a new folder")
    other = next((d for d in seen if (d["size"], int(d["seed"])) != (size, seed)), None)
    if other is not None:
        raise Conflict(f"{store}: the store holds {_what(other['size'], int(other['seed']))}, not "
                       f"{_what(size, seed)}; pass another --store (the default for this one is "
                       f"{default_path(Path('twin-store'), size, seed)}) or delete the store")
