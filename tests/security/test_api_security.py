"""Security over real HTTP (`twin serve`): credentials (API keys, tokens; expired, forged, tampered, revoked,
disabled, malformed), roles on writes, and the matrix of principals × read routes against the store's own truth
(clearance and area), with exactly one audit record per access to non-public data and a log that verifies."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import h3
import httpx
import jwt
import pyproj
import pytest
import shapely

from data_models import Classification
from tests.api.server import serve
from tests.conftest import make_buildings
from twin.pipeline.build import build
from twin.reality3d.footprint_solids import footprint_solids
from twin.security import principals as P
from twin.security import tokens
from twin.security.audit import AuditLog
from twin.store import Query, Store

LEVELS = list(Classification)
AREA = shapely.box(446_000, 4_420_000, 448_045, 4_436_000)  # west of the 6×6 grid and its first 3 columns


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """36 buildings, classifications cycling public → secret; four principals; a server reading it."""
    tmp = tmp_path_factory.mktemp("secure_city")
    s = Store.init(tmp / "store")
    def solid(b, i):
        lods = footprint_solids(shapely.geometry.shape(b.geometry.model_dump()), b.height, 40.0).lods
        return b.model_copy(update={"classification": LEVELS[i % 4], "lods": lods})

    s.commit([solid(b, i) for i, b in enumerate(make_buildings(36))], message="city")
    build(s, only=["layers"])
    keys = {
        "admin": P.add(s, "root", ["admin"], "secret")[1],
        "analyst": P.add(s, "ana", ["analyst"], "internal")[1],
        "viewer": P.add(s, "vic", ["viewer"], "confidential", area=shapely.geometry.mapping(AREA))[1],
    }
    secrets_dir = tmp / "secrets"
    with serve(tmp / "store", tmp, env={"TWIN_SECRETS_DIR": str(secrets_dir)}) as srv:
        yield {"store": s, "srv": srv, "keys": keys, "secrets": secrets_dir, "tmp": tmp}


def _h(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _allowed(s: Store, clearance: Classification, area: shapely.Geometry | None) -> set[str]:
    """The store's own truth: ids of buildings within clearance (and intersecting the area)."""
    out = set()
    for f in s.features(query=Query(types=["Building"])):
        if Classification(f["classification"]).rank > clearance.rank:
            continue
        if area is not None and not shapely.intersects(area, shapely.geometry.shape(f["geometry"])):
            continue
        out.add(f["id"])
    return out


PRINCIPALS = {  # role → (key name, clearance, area, principal name)
    "anonymous": (None, Classification.public, None, "anonymous"),
    "viewer": ("viewer", Classification.confidential, AREA, "vic"),
    "analyst": ("analyst", Classification.internal, None, "ana"),
    "admin": ("admin", Classification.secret, None, "root"),
}


def _audit(city) -> list[dict]:
    return list(AuditLog(city["store"].root).read())


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_every_read_route_sees_exactly_what_the_principal_may(city, who: str) -> None:
    s, base = city["store"], city["srv"].base
    key_name, clearance, area, name = PRINCIPALS[who]
    h = _h(city["keys"].get(key_name))
    want = _allowed(s, clearance, area)
    everything = {f["id"] for f in s.features(query=Query(types=["Building"]))}
    hidden = everything - want
    assert want and (hidden or who == "admin")
    before = len(_audit(city))
    page = httpx.get(f"{base}/collections/buildings/items", params={"limit": 1000}, headers=h)
    assert page.status_code == 200
    assert {f["id"] for f in page.json()["features"]} == want
    assert page.json()["numberMatched"] == len(want)
    col = httpx.get(f"{base}/collections/buildings", headers=h).json()
    assert col["numberOfFeatures"] == len(want)
    shown = sorted(want)[0]
    assert httpx.get(f"{base}/collections/buildings/items/{shown}", headers=h).status_code == 200
    assert httpx.get(f"{base}/entities/{shown}/history", headers=h).status_code == 200
    for hid in sorted(hidden)[:3]:
        for path in (f"/collections/buildings/items/{hid}", f"/entities/{hid}/history", f"/entities/{hid}"):
            r = httpx.get(base + path, headers=h)
            assert r.status_code == 404, (path, r.status_code)
    # no byte of a hidden building in any answer: pages, the collection, the changelog, errors
    texts = [page.text, json.dumps(col), httpx.get(f"{base}/commits/1/changes", headers=h).text]
    for hid in hidden:
        assert not any(hid in t for t in texts), hid
    for hid in sorted(hidden)[:2]:  # a hidden id's 404 says what an unknown id's says: its existence does not leak
        r = httpx.get(f"{base}/collections/buildings/items/{hid}", headers=h).json()["detail"]
        assert r == httpx.get(f"{base}/collections/buildings/items/nope", headers=h).json()["detail"].replace(
            "nope", hid)
    # one audit record per request that read non-public data, none for public-only reads
    records = _audit(city)[before:]
    nonpublic = {i for i in want if s.get(i)["classification"] != "public"}
    if who == "anonymous":
        assert records == []
    else:
        assert records and all(r["principal"] == name and r["action"] == "read" for r in records)
        read_ids = set().union(*(set(r["target"].get("ids", {}).get("city", [])) for r in records))
        assert read_ids <= nonpublic | set() and read_ids & nonpublic
        assert not read_ids & hidden


def test_keys_and_tokens_and_what_makes_them_invalid(city) -> None:
    s, base, keys = city["store"], city["srv"].base, city["keys"]
    me = httpx.get(f"{base}/auth/whoami", headers=_h(keys["analyst"])).json()
    assert (me["name"], me["clearance"], me["roles"]) == ("ana", "internal", ["analyst"])
    assert "hash" not in json.dumps(me)
    assert httpx.get(f"{base}/auth/whoami", headers={"X-API-Key": keys["analyst"]}).json()["name"] == "ana"
    assert httpx.get(f"{base}/auth/whoami").json()["name"] == "anonymous"
    t = httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials", "client_secret": keys["analyst"]})
    assert t.status_code == 200 and t.json()["token_type"] == "bearer" and t.json()["expires_in"] == 3600
    token = t.json()["access_token"]
    assert httpx.get(f"{base}/auth/whoami", headers=_h(token)).json()["name"] == "ana"
    secret = tokens._secret(s, city["secrets"])
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer="twin")
    expired = jwt.encode({**claims, "iat": int(time.time()) - 100, "exp": int(time.time()) - 10}, secret, "HS256")
    forged = jwt.encode({**claims, "sub": "principal-root"}, b"x" * 32, "HS256")
    head, payload, sig = token.split(".")
    raised = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "principal-root"}).encode()).decode().rstrip("=")
    tampered = f"{head}.{raised}.{sig}"
    unknown = "twin_AAAAAAAAAAAA_" + "A" * 43
    wrong = keys["analyst"][:-4] + "AAAA"
    bad = [
        (_h(expired), "expired"), (_h(forged), "not valid"), (_h(tampered), "not valid"),
        (_h(unknown), "not valid"), (_h(wrong), "not valid"), ({"Authorization": "Basic dXNlcjpwdw=="}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"), ({"Authorization": "Bearer a b"}, "Bearer"),
        (_h("x" * 5000), "too long"), ({"X-API-Key": "short"}, "malformed"),
        ({**_h(keys["analyst"]), "X-API-Key": keys["analyst"]}, "not both"),
    ]
    for headers, why in bad:
        r = httpx.get(f"{base}/collections/buildings/items", headers=headers)
        assert r.status_code == 401 and why in r.json()["detail"], (headers, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        for v in headers.values():
            cred = v.split(" ")[-1]
            assert len(cred) < 8 or cred not in r.text  # a credential is never echoed
    r = httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials", "client_secret": wrong})
    assert r.status_code == 401
    # a viewer writing is a 403; revoking the key ends the key and its tokens; disabling ends the principal
    r = httpx.post(f"{base}/scenarios", json={"name": "mine"}, headers=_h(keys["viewer"]))
    assert r.status_code == 403 and "edit permission" in r.json()["detail"]
    assert httpx.get(f"{base}/admin/principals", headers=_h(keys["analyst"])).status_code == 403
    spare = P.new_key(s, "ana")
    t2 = httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials", "client_secret": spare}).json()
    P.revoke_key(s, "ana", spare.split("_")[1])
    assert httpx.get(f"{base}/auth/whoami", headers=_h(spare)).status_code == 401
    assert "revoked" in httpx.get(f"{base}/auth/whoami", headers=_h(t2["access_token"])).json()["detail"]
    assert httpx.get(f"{base}/auth/whoami", headers=_h(keys["analyst"])).status_code == 200
    P.update(s, "ana", disabled=True)
    try:
        for cred in (keys["analyst"], token):
            r = httpx.get(f"{base}/auth/whoami", headers=_h(cred))
            assert r.status_code == 401 and "disabled" in r.json()["detail"]
    finally:
        P.update(s, "ana", disabled=False)
    assert "s3cret" not in (city["tmp"] / f"serve-{city['srv'].port}.stderr").read_text()


def test_admin_api_manages_principals_and_reads_the_audit_log(city) -> None:
    s, base, keys = city["store"], city["srv"].base, city["keys"]
    admin = _h(keys["admin"])
    r = httpx.post(f"{base}/admin/principals", headers=admin,
                   json={"name": "gina", "roles": ["gis"], "clearance": "internal"})
    assert r.status_code == 201 and r.json()["key"].startswith("twin_")
    gina = r.json()["key"]
    assert httpx.get(f"{base}/auth/whoami", headers=_h(gina)).json()["roles"] == ["gis"]
    assert {p["name"] for p in httpx.get(f"{base}/admin/principals", headers=admin).json()} >= {"root", "gina"}
    for body, why in (({"name": "gina", "roles": ["gis"]}, "exists"), ({"name": "x", "roles": ["boss"]}, "role"),
                      ({"name": "x", "roles": ["gis"], "clearance": "top"}, "classification"),
                      ({"name": "x", "roles": ["gis"], "area": {"type": "Point", "coordinates": [0, 0]}}, "area")):
        r = httpx.post(f"{base}/admin/principals", headers=admin, json=body)
        assert r.status_code in (400, 409) and why in r.json()["detail"], r.text
    r = httpx.patch(f"{base}/admin/principals/gina", headers=admin, json={"clearance": "confidential"})
    assert r.status_code == 200 and r.json()["clearance"] == "confidential"
    kid = gina.split("_")[1]
    assert httpx.delete(f"{base}/admin/principals/gina/keys/{kid}", headers=admin).status_code == 200
    assert httpx.get(f"{base}/auth/whoami", headers=_h(gina)).status_code == 401
    log = httpx.get(f"{base}/admin/audit", headers=admin, params={"action": "admin", "limit": 50}).json()
    assert {"added_principal", "changed_principal", "revoked_key"} <= {k for r in log for k in r["target"]}
    assert all(r["principal"] == "root" for r in log if "added_principal" in r["target"])
    assert AuditLog(s.root).verify().ok


def test_tiles_of_a_public_view_hold_no_confidential_building(city) -> None:
    """The buildings tileset is built per view: the anonymous one's tiles carry public buildings only, and a
    content file of the full tileset is not reachable from it."""
    from twin.tiles.glb import read_glb
    from twin.tiles.metadata import read_property_table

    s, base, keys = city["store"], city["srv"].base, city["keys"]
    ids: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}
    for who, key in (("anonymous", None), ("admin", keys["admin"])):
        ts = httpx.get(f"{base}/tiles/main/latest/buildings/tileset.json", headers=_h(key), timeout=120)
        assert ts.status_code == 200, ts.text
        uris = set(_contents(ts.json()["root"]))
        files[who] = uris
        ids[who] = set()
        for uri in uris:
            glb = httpx.get(f"{base}/tiles/main/latest/buildings/{uri}", headers=_h(key))
            assert glb.status_code == 200
            gltf, binary = read_glb(glb.content)
            ids[who] |= set(read_property_table(gltf, binary)["id"])
    assert ids["anonymous"] == _allowed(s, Classification.public, None)
    assert ids["admin"] == _allowed(s, Classification.secret, None)
    for uri in files["admin"] - files["anonymous"]:
        assert httpx.get(f"{base}/tiles/main/latest/buildings/{uri}").status_code == 404


def _contents(tile: dict) -> list[str]:
    out = [tile["content"]["uri"]] if "content" in tile else []
    for child in tile.get("children", []):
        out += _contents(child)
    return out


def test_the_audit_log_verifies_and_finds_tampering(city) -> None:
    log = AuditLog(city["store"].root)
    assert log.verify().ok
    path = Path(log.log_path)
    lines = path.read_text().splitlines()
    assert len(lines) >= 3
    edited = lines[:]
    edited[1] = edited[1].replace('"read"', '"wrote"', 1) if '"read"' in edited[1] else edited[1][:-2] + ' }'
    original = path.read_text()
    try:
        path.write_text("\n".join(edited) + "\n")
        report = log.verify()
        assert not report.ok and report.first_bad_seq in (0, 1)
    finally:
        path.write_text(original)
    assert log.verify().ok


def test_a_layer_above_clearance_is_served_in_its_declared_public_form_only(city) -> None:
    """Layers carry the highest classification of their inputs (here secret: the buildings include secret ones);
    one declares a public form: a public caller gets it at one coarse resolution with cells under k observations
    left out, an area-limited one inside its area only; a layer without a public form does not exist for them."""
    from twin.layers.registry import Layers
    from twin.store import LAYERS

    s, base, keys = city["store"], city["srv"].base, city["keys"]
    specs = {x["id"]: x for x in s.features(query=Query(collection=LAYERS))}
    assert specs and {x["classification"] for x in specs.values()} == {"secret"}
    name, other = sorted(specs)[:2]
    spec = specs[name]
    target = sorted(spec["resolutions"])[-2]  # coarser than the finest
    policy = {"name": "coarse", "res": target, "k_min": 2, "source_max": "secret"}
    s.commit([{**spec, "public_form": policy}], message="a public form")
    listed = {x["name"]: x for x in httpx.get(f"{base}/layers").json()}
    assert set(listed) == {name} and listed[name]["resolutions"] == [target]
    assert listed[name]["classification"] == "public" and listed[name]["lineage"] == []
    before = len(_audit(city))
    rows = httpx.get(f"{base}/layers/{name}/cells").json()
    raw = Layers(s).query(name, res=target).to_pylist()
    want = {(r["cell"], r["t"]): r for r in raw if r["count"] >= 2}
    assert rows and len(rows) == len(want) and all(r["count"] >= 2 for r in rows)
    assert any(r["count"] < 2 for r in raw) or len(raw) == len(rows)
    assert httpx.get(f"{base}/layers/{name}/cells", params={"res": max(spec["resolutions"])}).status_code == \
        (400 if max(spec["resolutions"]) != target else 200)
    assert httpx.get(f"{base}/layers/{other}").status_code == 404
    assert httpx.get(f"{base}/layers/{other}/cells").status_code == 404
    records = _audit(city)[before:]
    assert len(records) == 1 and records[0]["principal"] == "anonymous" and \
        records[0]["target"]["ids"]["layers"] == [name]
    # the area-limited viewer (confidential < secret) gets the public form inside its area only
    mine = httpx.get(f"{base}/layers/{name}/cells", headers=_h(keys["viewer"]), params={"format": "geojson"}).json()
    everyone = httpx.get(f"{base}/layers/{name}/cells", params={"format": "geojson"}).json()
    def centre_inside(cell: str) -> bool:  # the rule, checked with h3 and pyproj directly
        lat, lon = h3.cell_to_latlng(cell)
        x, y = pyproj.Transformer.from_crs("EPSG:4326", s.crs, always_xy=True).transform(lon, lat)
        return AREA.contains(shapely.Point(x, y))

    cell_of = lambda f: f["properties"]["cell"]  # noqa: E731
    assert {cell_of(f) for f in mine["features"]} == {cell_of(f) for f in everyone["features"]
                                                      if centre_inside(cell_of(f))}
    assert len(mine["features"]) < len(everyone["features"])
    # the admin sees the layer itself, at every resolution
    assert httpx.get(f"{base}/layers/{name}", headers=_h(keys["admin"])).json()["resolutions"] == spec["resolutions"]
