"""The CLI as a principal: with TWIN_API_KEY an export carries only what that principal may see; every export,
with a key or as the local admin, leaves one audit record saying who and which non-public objects it carried."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from data_models import Classification
from tests.conftest import TWIN
from twin.reality3d.footprint_solids import footprint_solids
from twin.security import principals as P
from twin.security.audit import AuditLog
from twin.store import Store

LEVELS = list(Classification)


def _twin(store: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(TWIN_STORE=str(store), **({"TWIN_API_KEY": key} if key else {}))
    return subprocess.run([TWIN, *args], env=env, capture_output=True, text=True, timeout=120)


def test_exports_as_a_principal_and_their_audit(tmp_path) -> None:
    import shapely

    from tests.conftest import make_buildings

    s = Store.init(tmp_path / "s")
    bs = []
    for i, b in enumerate(make_buildings(8)):
        lods = footprint_solids(shapely.geometry.shape(b.geometry.model_dump()), b.height, 40.0).lods
        bs.append(b.model_copy(update={"classification": LEVELS[i % 4], "lods": lods}))
    s.commit(bs, message="city")
    key = P.add(s, "gis-public", ["gis"], "public")[1]
    out = tmp_path / "public.city.json"
    r = _twin(s.root, "export", "cityjson", str(out), key=key)
    assert r.returncode == 0, r.stderr
    got = set(json.loads(out.read_text())["CityObjects"])
    assert got == {b.id for b in bs if b.classification == Classification.public}
    full = tmp_path / "all.city.json"
    assert _twin(s.root, "export", "cityjson", str(full)).returncode == 0
    assert set(json.loads(full.read_text())["CityObjects"]) >= {b.id for b in bs}
    exports = [r for r in AuditLog(s.root).read() if r["action"] == "export"]
    assert [e["principal"] for e in exports][0] == "gis-public" and exports[1]["principal"].startswith("local")
    assert "ids" not in exports[0]["target"]  # public objects only: nothing restricted left with it
    assert set(exports[1]["target"]["ids"]["city"]) == {b.id for b in bs if b.classification != "public"}
    assert exports[0]["size"] == len(got) and AuditLog(s.root).verify().ok
    r = _twin(s.root, "export", "cityjson", str(out), key="twin_AAAAAAAAAAAA_" + "B" * 43)
    assert r.returncode != 0 and "not valid" in r.stderr and "B" * 43 not in r.stderr
