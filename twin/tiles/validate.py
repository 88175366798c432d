"""Khronos glTF validator (npm ``gltf-validator``) over a batch of GLB files, through one node process."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gltf_validate.mjs"


def validator_available() -> bool:
    """True when node and the npm package are installed (``make install`` does both)."""
    return shutil.which("node") is not None and (ROOT / "node_modules" / "gltf-validator").is_dir()


def validate_glbs(paths: Iterable[Path | str], timeout: float = 300.0) -> dict[str, dict[str, Any]]:
    """Validation summary per file: numErrors, numWarnings, numInfos and the error/warning messages."""
    files = [str(p) for p in paths]
    if not files:
        return {}
    proc = subprocess.run(["node", str(SCRIPT)], input="\n".join(files), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"gltf validator failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)
