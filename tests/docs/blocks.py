"""The fenced code blocks of a Markdown file, and which shell lines of them are run (see test_code_blocks.py).

A block is a ``` (or ~~~) fence; its language is the fence's first word. ``python`` / ``py`` blocks are Python;
``bash`` / ``sh`` / ``shell`` / ``console`` blocks are shell (``console``: only ``$ `` lines are commands); every
other fence (``text``, ``json``, none) is shown, never run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")

# commands that never run, by prefix, with the reason the report gives
SKIPPED = {
    "twin serve": "serves until stopped (the test starts its own server for curl lines)",
    "twin demo": "generates, builds and serves a city (the test's store is that city, built once per session)",
    "twin ingest": "reads the reader's own files (the demo's are ingested by the session fixture)",
    "twin build": "the whole pipeline (tested in tests/pipeline)",
    "twin tiles build": "builds every tileset (tested in tests/tiles)",
}
RUN_FIRST_WORDS = {"twin", "curl"}  # curl only when a server runs (the doc's blocks name localhost:8000)


@dataclass
class Block:
    doc: str  # the file, relative to the repository root
    lang: str  # "python", "shell" or the fence's own word
    line: int  # 1-based line of the block's first code line
    code: str
    console: bool = False


@dataclass
class Command:
    line: int  # 1-based line in the doc
    text: str  # the logical line (continuations joined, trailing comment dropped)
    skip: str | None  # why it is not run; None: it runs
    argv: list[list[str]] | None = None  # its twin commands' arguments when the line needs no shell (else None)


def blocks(path: Path, root: Path) -> list[Block]:
    """Every fenced block of ``path`` in order; an unclosed fence runs to the end of the file (as CommonMark)."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = path.relative_to(root).as_posix()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        info = m["info"].strip().split()
        word = info[0].lower() if info else ""
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if (close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence)
                    and not close["info"].strip()):
                break
            ln = lines[i]
            body.append(ln[indent:] if ln[:indent].strip() == "" else ln.lstrip())
            i += 1
        i += 1
        lang = "python" if word in PYTHON else "shell" if word in SHELL else word
        out.append(Block(doc, lang, start + 1, "\n".join(body) + "\n", console=word == "console"))
    return out


def _outside_quotes(s: str) -> str:
    """``s`` with every quoted span ('…' or "…") blanked out, so syntax checks see only the bare words."""
    out, quote = [], None
    for ch in s:
        if quote:
            out.append(" ")
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _strip_comment(s: str) -> str:
    bare = _outside_quotes(s)
    for k, ch in enumerate(bare):
        if ch == "#" and (k == 0 or bare[k - 1].isspace()):
            return s[:k].rstrip()
    return s.rstrip()


_NOT_METAVARS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # curl -X …
_METAVAR = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Za-z0-9]+)?(=[A-Z][A-Z0-9_]*)?,?$")


def synopsis(text: str) -> str | None:
    """Why a command line is a usage synopsis (shown, not run), or None when it is a concrete command: optional
    syntax ``[…]``, alternatives ``a | b``, an ellipsis (``PATH...``, ``…``), a ``<placeholder>`` or an upper-case
    metavariable (``PATH``, ``RUN_A``, ``OUT.json``, ``KEY=VALUE``) outside quotes."""
    bare = _outside_quotes(text)
    if "[" in bare or "]" in bare:
        return "synopsis: optional syntax [...]"
    if re.search(r"\s\|\s", bare):
        return "synopsis: alternatives a | b"
    if "..." in bare or "…" in bare:
        return "synopsis: an ellipsis"
    if re.search(r"<[A-Za-z_][\w-]*>", bare):
        return "synopsis: a <placeholder>"
    for word in bare.split()[1:]:
        if _METAVAR.match(word) and word not in _NOT_METAVARS:
            return f"synopsis: the metavariable {word}"
    return None


def _parts(text: str) -> list[str]:
    """The commands of a line split at ``;`` and ``&&`` outside quotes."""
    bare = _outside_quotes(text)
    parts, start, k = [], 0, 0
    while k < len(bare):
        if bare[k] == ";" or bare.startswith("&&", k):
            parts.append(text[start:k])
            k += 1 if bare[k] == ";" else 2
            start = k
        else:
            k += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def commands(block: Block, server: bool) -> list[Command]:
    """The logical command lines of a shell block, each with why it is skipped (None: it runs). A line runs when
    every command on it (split at ``;`` / ``&&``) starts with ``twin`` — or ``curl`` while ``server`` — none is in
    :data:`SKIPPED`, and the line is no :func:`synopsis`."""
    raw = block.code.splitlines()
    out: list[Command] = []
    i = 0
    while i < len(raw):
        first, line = i, raw[i]
        i += 1
        if block.console:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        text = _strip_comment(line)
        while text.endswith("\\") and i < len(raw):
            text = text[:-1].rstrip() + " " + _strip_comment(raw[i].strip())
            i += 1
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", text)
        if heredoc:  # the here-document belongs to this command
            end = heredoc.group(1)
            while i < len(raw) and raw[i].strip() != end:
                i += 1
            i += 1
        if not text.strip():
            continue
        text = text.strip()
        skip = _skip(text, server, heredoc is not None)
        out.append(Command(block.line + first, text, skip, None if skip else twin_argv(text)))
    return out


_SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~\\]")


def twin_argv(text: str) -> list[list[str]] | None:
    """The arguments of each ``twin`` command on a line (split at ``;`` / ``&&``, words as the shell splits
    them), or None when a command is not ``twin`` or uses shell syntax (pipes, redirections, variables, globs):
    such a line runs in bash."""
    out = []
    for part in _parts(text):
        if _SHELL_SYNTAX.search(_outside_quotes(part)) or "$" in part or "`" in part:  # "$X" expands too
            return None
        words = shlex.split(part)
        if not words or words[0] != "twin":
            return None
        out.append(words[1:])
    return out


def _skip(text: str, server: bool, heredoc: bool) -> str | None:
    if heredoc:
        return "a here-document (a script of its own, not a twin command)"
    for part in _parts(text):
        word = part.split()[0]
        if word not in RUN_FIRST_WORDS or (word == "curl" and not server):
            return synopsis(text) or f"{word}: only twin commands run (and curl against the test's server)"
        norm = " ".join(part.split())
        for prefix, why in SKIPPED.items():
            if norm == prefix or norm.startswith(prefix + " "):
                return f"{prefix}: {why}"
    return synopsis(text)
