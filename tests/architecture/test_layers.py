"""The layer contracts of pyproject.toml hold for twin, and they do catch an upward import (so they are not vacuous)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_contract_is_kept() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout and "KEPT" in out.stdout


def _copy(tmp: Path) -> Path:
    for name in ("twin", "data_models"):
        shutil.copytree(ROOT / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__", "static", "viewer"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _append(root / "twin" / "store" / "engine.py", "import twin.pipeline.build  # noqa")
    out = _lint(root)
    assert out.returncode != 0
    assert "data flows one way BROKEN" in out.stdout
    assert "twin.store.engine -> twin.pipeline.build" in out.stdout


def test_fastapi_below_the_api_and_a_sibling_import_are_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _append(root / "twin" / "tiles" / "glb.py", "import fastapi  # noqa")
    _append(root / "twin" / "fusion" / "change.py", "import twin.reality3d.trees  # noqa")
    out = _lint(root)
    assert out.returncode != 0
    assert "nothing below api/ imports FastAPI or Starlette BROKEN" in out.stdout
    assert "twin.tiles.glb -> fastapi" in out.stdout
    assert "twin.fusion.change -> twin.reality3d.trees" in out.stdout
