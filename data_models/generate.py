"""Generate the JSON Schema files of the CIM into ``data_models/schema/``.

python -m data_models.generate           # (re)write the files
python -m data_models.generate --check   # exit 1, listing the files that are out of date
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from .city_objects import (
    AnyCityObject,
    Building,
    BuildingPart,
    LandCover,
    Observation,
    Road,
    Sensor,
    Solid,
    Vegetation,
    WaterBody,
)
from .commits import Branch, Change, Commit
from .common import Geometry, Provenance, Quality
from .layers import LayerSpec
from .runs import SimulationRun
from .scenarios import Scenario, ScenarioEdit
from .security import Principal
from .sources import SourceAsset

__all__ = ["SCHEMA_DIR", "TOP_LEVEL", "render_schemas", "write_schemas", "check_schemas", "main"]

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
SCHEMA_BASE_URI = "https://twin.example.org/schema/"

# file stem -> model (or annotated union)
TOP_LEVEL: dict[str, Any] = {
    "city_object": AnyCityObject,
    "building": Building,
    "building_part": BuildingPart,
    "road": Road,
    "land_cover": LandCover,
    "water_body": WaterBody,
    "vegetation": Vegetation,
    "sensor": Sensor,
    "observation": Observation,
    "solid": Solid,
    "geometry": Geometry,
    "provenance": Provenance,
    "quality": Quality,
    "source_asset": SourceAsset,
    "layer_spec": LayerSpec,
    "scenario": Scenario,
    "scenario_edit": ScenarioEdit,
    "simulation_run": SimulationRun,
    "principal": Principal,
    "commit": Commit,
    "branch": Branch,
    "change": Change,
}


def _schema(stem: str, target: Any) -> dict[str, Any]:
    if isinstance(target, type) and issubclass(target, BaseModel):
        schema = target.model_json_schema()
    else:
        schema = TypeAdapter(target).json_schema()
        schema.setdefault("title", "".join(p.capitalize() for p in stem.split("_")))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE_URI}{stem}.json",
        **schema,
    }


def render_schemas() -> dict[str, str]:
    """File name -> file text for every top-level model (sorted keys, 2-space indent, trailing newline)."""
    return {
        f"{stem}.json": json.dumps(_schema(stem, target), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for stem, target in sorted(TOP_LEVEL.items())
    }


def check_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing, different from the models, or no longer generated."""
    wanted = render_schemas()
    stale = []
    for name, text in wanted.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    if directory.is_dir():
        stale += sorted(p.name for p in directory.glob("*.json") if p.name not in wanted)
    return sorted(stale)


def write_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write all schema files (and delete obsolete ones); returns the names written or deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = check_schemas(directory)
    wanted = render_schemas()
    for name in changed:
        path = directory / name
        if name in wanted:
            path.write_text(wanted[name], encoding="utf-8")
        else:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_models.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if any schema file is out of date")
    parser.add_argument(
        "--dir", type=Path, default=SCHEMA_DIR, help="output directory (default: package schema/)"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = check_schemas(args.dir)
        if stale:
            print("out of date (run `python -m data_models.generate`):", file=sys.stderr)
            for name in stale:
                print(f"  {args.dir / name}", file=sys.stderr)
            return 1
        print(f"{len(TOP_LEVEL)} schema files up to date in {args.dir}")
        return 0
    changed = write_schemas(args.dir)
    print(
        f"wrote {len(changed)} of {len(TOP_LEVEL)} schema files in {args.dir}"
        + (f": {', '.join(changed)}" if changed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
