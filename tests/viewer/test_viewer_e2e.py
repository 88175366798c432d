"""The web viewer end to end: a real `twin serve` over the built demo city, the page in headless Chromium with
software WebGL (SwiftShader), real tiles, imagery, features and layers — no mocks.

One page is loaded per module (Cesium in software WebGL costs seconds per start); the tests below run in file order
on it: load and render, click a building, colour by height, drape a layer and move the time slider, switch the
version and the branch; then the API docs pages (/docs, /redoc) in two more pages of the same browser; last, the
page opened again on a traffic run of a road-closure scenario against the run on main.
Screenshots and a timing summary go to test-artifacts/viewer/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, TWIN

CHROMIUM = Path("/usr/bin/chromium")
# software WebGL 2 through ANGLE + SwiftShader: the same pixels on any machine, no GPU needed
CHROMIUM_ARGS = ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                 "--no-sandbox"]
ARTIFACTS = ROOT / "test-artifacts" / "viewer"
CANVAS = (640, 400)  # body.test #cesium in style.css
TIMEOUT_MS = 60_000


def _require(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        raise AssertionError(f"viewer end-to-end test cannot run in CI: {why}")
    pytest.skip(why)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not up after {timeout} s")


def _rgb(png: bytes) -> np.ndarray:
    """H×W×3 uint8 pixels of a PNG (decoded by GDAL's PNG driver through rasterio, a dependency already)."""
    from rasterio.io import MemoryFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with MemoryFile(png) as mem, mem.open() as ds:
            return np.transpose(ds.read()[:3], (1, 2, 0))


def _marker_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of buildings in the test colour (magenta #ff00ff, shaded by Cesium's lighting): red and blue high and
    alike, green far below both. Imagery and terrain of the demo city never look like this."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    return (r > 70) & (b > 70) & (np.abs(r - b) < 0.35 * np.maximum(r, b)) & (g < 0.55 * np.minimum(r, b))


def _erode(mask: np.ndarray, k: int = 2) -> np.ndarray:
    out = mask.copy()
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            out &= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


class Session:
    """The server, the browser page and everything the page did: requests, console messages, timings."""

    def __init__(self) -> None:
        self.console: list[tuple[str, str]] = []
        self.page_errors: list[str] = []
        self.responses: list[tuple[str, int]] = []
        self.failed: list[tuple[str, str]] = []
        self.timings: dict[str, float] = {}
        self.samples: dict[str, object] = {}  # pixel colours measured by the tests, for the summary
        self.base = ""
        self.key = ""  # the planner's API key
        self.auth: dict[str, str] = {}  # its Authorization header, for the tests' own requests
        self.hidden: list[str] = []  # the confidential buildings: the planner sees them, anonymous does not

    def ours(self, url: str) -> bool:
        return url.startswith(self.base)

    def paths(self, prefix: str, status: int | None = 200) -> list[str]:
        return [u[len(self.base):] for u, s in self.responses
                if self.ours(u) and urlparse(u).path.startswith(prefix) and (status is None or s == status)]

    def bad_responses(self) -> list[tuple[str, int]]:
        return [(u, s) for u, s in self.responses if self.ours(u) and s >= 400]

    def console_errors(self) -> list[str]:
        return [t for kind, t in self.console if kind == "error"]


BRANCH = "what-if"


@pytest.fixture(scope="module")
def viewer(built_city, tmp_path_factory):
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing (make sysdeps installs it)")
    from twin.api.routers.viewer import cesium_dir

    _require(cesium_dir() is not None, "CesiumJS is missing: run make install (npm ci)")
    from playwright.sync_api import sync_playwright

    from twin.store import Query, Store

    # a copy of the shared city (read-only) with a scenario branch where one building is demolished
    store_dir = tmp_path_factory.mktemp("viewer") / "store"
    shutil.copytree(built_city["store"], store_dir, symlinks=True)
    store = Store(store_dir)
    demolished = sorted(b["id"] for b in store.features(query=Query(types=["Building"])))[0]
    from twin.sim import engine

    sun = {"step_min": 20, "window_spacing_m": 8, "ground": False}  # coarse: the colours are what is tested
    run_main = engine.run(store, "sunlight", sun).id
    store.create_branch(BRANCH, from_branch="main", description="what if one building is demolished")
    store.commit([], [demolished], message="demolish one building", branch=BRANCH)
    run_branch = engine.run(store, "sunlight", sun, branch=BRANCH).id
    # traffic at 8:00 on main and in a scenario that closes main's busiest road: where does its traffic go?
    from twin.sim import scenarios

    traffic_main = engine.run(store, "traffic", {"hours": [8]})
    busiest = max(engine.result_table(store, traffic_main, "traffic_roads").to_pylist(), key=lambda r: r["volume"])
    closure = scenarios.create(store, "close the busiest road")
    scenarios.add_edit(store, closure.id, {"kind": "close_road", "road_id": busiest["entity_id"]})
    traffic_closed = engine.run(store, "traffic", {"hours": [8]}, branch=closure.branch)
    # the planner signs in (the demo city has a confidential compound, and runs that read it are confidential)
    from tests.api.server import auth, key_for

    planner_key = key_for(store_dir, name="planner", role="analyst", clearance="confidential")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # tilesets missing from the store are built by the server into its cache directory, never into the store
    env = {**os.environ, "TWIN_STORE": str(store_dir), "TWIN_CACHE_DIR": str(store_dir.parent / "server-cache")}
    server = subprocess.Popen([TWIN, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    sess = Session()
    sess.base = f"http://127.0.0.1:{port}"
    sess.demolished = demolished
    sess.runs = (run_main, run_branch)
    sess.traffic = {"main": traffic_main.id, "closed": traffic_closed.id, "road": busiest["entity_id"],
                    "branch": closure.branch}
    sess.key, sess.auth = planner_key, auth(store_dir, name="planner")
    sess.hidden = sorted(b["id"] for b in store.features(query=Query(types=["Building"]))
                         if b["classification"] != "public")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        _wait_http(sess.base + "/health", server)
        # the store has no tilesets built (no `twin tiles build`): the server builds each on its first request, into
        # its cache directory; do that here, so the page's timings are the viewer's own
        t0 = time.perf_counter()
        for kind in ("buildings", "terrain", "pointcloud"):
            for headers in (sess.auth, {}):  # the planner's tilesets and the public ones
                httpx.get(f"{sess.base}/tiles/main/latest/{kind}/tileset.json", timeout=600, headers=headers)
        sess.timings["tilesets_first_request_s"] = time.perf_counter() - t0
        with sync_playwright() as pw:
            t0 = time.perf_counter()
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.on("console", lambda m: sess.console.append((m.type, m.text)))
            page.on("pageerror", lambda e: sess.page_errors.append(str(e)))
            page.on("response", lambda r: sess.responses.append((r.url, r.status)))
            page.on("requestfailed", lambda r: sess.failed.append((r.url, r.failure or "")))
            sess.timings["browser_start_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            page.goto(sess.base + "/viewer/?test=1", wait_until="load")
            page.wait_for_function("window.twin !== undefined", timeout=TIMEOUT_MS)
            page.evaluate("window.twin.ready")
            assert page.inner_text("#auth-note") == "without a key: the public city only"
            page.fill("#api-key", planner_key)
            with page.expect_navigation():  # signing in starts the page again as the planner
                page.click("#sign-in")
            sess.responses.clear()  # what the anonymous page loaded (and the requests the reload cut off)
            sess.failed.clear()
            page.wait_for_function("window.twin !== undefined", timeout=TIMEOUT_MS)
            page.evaluate("window.twin.ready")
            assert page.inner_text("#who") == "planner" and page.is_hidden("#sign-in-form")
            sess.timings["page_ready_s"] = time.perf_counter() - t1
            page.wait_for_function("window.twin.tilesLoaded()", polling=250, timeout=TIMEOUT_MS)
            sess.timings["tiles_loaded_s"] = time.perf_counter() - t1
            sess.page = page
            sess.browser = browser
            yield sess
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        summary = {"timings_s": {k: round(v, 2) for k, v in sess.timings.items()}, "samples": sess.samples,
                   "responses": len(sess.responses), "bad_responses": sess.bad_responses(),
                   "console": sess.console[-50:], "page_errors": sess.page_errors}
        (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=1))


def _canvas_png(sess: Session, name: str) -> np.ndarray:
    png = sess.page.locator("#cesium canvas").first.screenshot()
    (ARTIFACTS / name).write_bytes(png)
    return _rgb(png)


def _settle(sess: Session) -> None:
    sess.page.wait_for_function("window.twin.tilesLoaded()", polling=250, timeout=TIMEOUT_MS)
    sess.page.evaluate("window.twin.render()")


def test_page_loads_tiles_and_imagery_without_errors(viewer: Session) -> None:
    sess = viewer
    state = sess.page.evaluate("window.twin.tilesets()")
    assert all("error" not in v for v in state.values()), state
    # the three tilesets of the latest version, and building content (glTF) below the root
    for kind in ("buildings", "terrain", "pointcloud"):
        assert sess.paths(f"/tiles/main/latest/{kind}/tileset.json"), kind
    glb = [p for p in sess.paths("/tiles/main/latest/buildings/") if urlparse(p).path.endswith(".glb")]
    assert glb, sess.paths("/tiles/", None)
    assert [p for p in sess.paths("/tiles/main/latest/terrain/") if not p.endswith("tileset.json")]
    # the base map from our imagery: the tilejson, then XYZ tiles
    assert sess.paths("/imagery/tilejson.json")
    assert [p for p in sess.paths("/imagery/") if urlparse(p).path.endswith(".png")]
    # nothing leaves the machine: every request went to our server (Cesium's files included) or is data:/blob:
    outside = [u for u, _ in sess.responses if not sess.ours(u) and not u.startswith(("data:", "blob:"))]
    assert outside == []
    assert sess.bad_responses() == [] and sess.failed == []
    assert sess.console_errors() == [] and sess.page_errors == []
    assert sess.page.evaluate("window.twin.errors") == []
    sess.timings["glb_requests"] = len(glb)
    # no Cesium ion: no ion logo in the credits (nor its image requested), CesiumJS named in plain text instead
    credit = sess.page.evaluate("""() => { const c = document.querySelector('.cesium-credit-logoContainer');
        return {imgs: c ? c.querySelectorAll('img').length : -1, text: c ? c.textContent : ''}; }""")
    assert credit == {"imgs": 0, "text": "CesiumJS"}, credit
    assert not [u for u, _ in sess.responses if "ion-credit" in u or "ion-logo" in u]


def test_buildings_are_rendered(viewer: Session) -> None:
    _settle(viewer)
    rgb = _canvas_png(viewer, "city.png")
    assert rgb.shape[:2] == (CANVAS[1], CANVAS[0])
    marker = _marker_mask(rgb)
    # buildings in the test colour cover a real part of the view, and the rest is not blank either
    assert marker.mean() > 0.01, f"only {marker.sum()} building pixels"
    assert rgb[~marker].std() > 5
    viewer.timings["building_pixels"] = int(marker.sum())
    ids = viewer.page.evaluate("window.twin.loadedBuildingIds(50)")
    assert ids and all(i.startswith("bldg-") for i in ids), ids[:5]


def test_click_on_a_building_shows_its_record(viewer: Session) -> None:
    sess, page = viewer, viewer.page
    rgb = _rgb(page.locator("#cesium canvas").first.screenshot())
    inner = _erode(_marker_mask(rgb), 3)
    ys, xs = np.nonzero(inner)
    assert len(xs), "no building interior visible to click"
    # the interior building pixel nearest the centre of the view
    order = np.argsort((xs - CANVAS[0] / 2) ** 2 + (ys - CANVAS[1] / 2) ** 2)
    box = page.locator("#cesium canvas").first.bounding_box()
    t0 = time.perf_counter()
    for i in order[:: max(1, len(order) // 20)][:20]:
        x, y = int(xs[i]), int(ys[i])
        expected = page.evaluate("([x, y]) => window.twin.pickAt(x, y)", [x, y])
        if expected:
            break
    assert expected, "no pickable building under the building-coloured pixels"
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("window.twin.selected() && window.twin.selected().loaded", timeout=TIMEOUT_MS)
    sess.timings["click_to_record_s"] = time.perf_counter() - t0
    assert page.inner_text("#building-id") == expected
    body = page.inner_text("#building-body")
    assert "quality" in body.lower() and "provenance" in body.lower()
    # the panel's record is the store's building, fetched by the picked id from OGC API Features
    assert sess.paths(f"/collections/buildings/items/{expected}")
    rec = httpx.get(f"{sess.base}/entities/{expected}", headers=sess.auth).json()
    assert rec["id"] == expected and rec.get("type", "Building") == "Building"
    # its name and district head the panel; the quality rows have plain names, their raw keys as tooltips
    attrs = rec.get("attributes") or {}
    assert attrs.get("name") and attrs.get("district"), attrs  # the demo's cadastre names every building
    assert page.inner_text("#building-name") == attrs["name"]
    assert attrs["district"] in page.inner_text("#building-place")
    rows = dict(page.eval_on_selector_all("#building-body tr[data-key]",
                                          "rs => rs.map(r => [r.dataset.key, r.querySelector('th').textContent])"))
    assert rows.get("quality.rmse") == "fit error (RMSE)" and rows.get("quality.valid") == "valid solid"
    assert all("_" not in label for label in rows.values()), rows  # no raw keys such as lod13_parts as labels
    if "lod13_parts" in (rec.get("quality") or {}):
        assert rows["quality.lod13_parts"] == "roof parts (LoD1.3)"
        assert page.get_attribute('#building-body tr[data-key="quality.lod13_parts"] th', "title") == \
            "quality.lod13_parts"
    for p in rec.get("provenance", [])[:3]:
        assert p["source_asset_id"] in body
    page.wait_for_timeout(200)
    _canvas_png(sess, "selected.png")
    assert sess.console_errors() == [] and sess.bad_responses() == []


HEIGHT_EDGES = (10, 20, 35, 60)  # the viewer's height classes (buildingStyle("height"))


def _patch(rgb: np.ndarray, x: float, y: float, r: int = 1) -> np.ndarray:
    """The median colour of the (2r+1)² pixels around canvas pixel (x, y)."""
    xi, yi = int(round(x)), int(round(y))
    return np.median(rgb[max(0, yi - r):yi + r + 1, max(0, xi - r):xi + r + 1].reshape(-1, 3), axis=0)


def _css_rgb(css: str) -> np.ndarray:
    return np.array([int(v) for v in re.findall(r"\d+", css)[:3]], dtype=float)


def test_colour_by_attribute_with_legend(viewer: Session) -> None:
    """Colour by height: a legend, and each visible building's pixels leave its plain colours for its class colour,
    which still reads as that class where Cesium's light shades it (the hue of the class, not a grey)."""
    page = viewer.page
    selected = (page.evaluate("window.twin.selected()") or {}).get("id")  # highlighted yellow: not a sample
    # one visible building per height class (where the page picks it), at most a few tries per class
    found: dict[int, tuple[str, dict]] = {}
    tries: dict[int, int] = {}
    for b in page.evaluate("window.twin.loadedBuildings(100000)"):
        if b["height"] is None or b["id"] == selected:
            continue
        k = sum(b["height"] >= e for e in HEIGHT_EDGES)
        if k in found or tries.get(k, 0) >= 6:
            continue
        tries[k] = tries.get(k, 0) + 1
        pos = page.evaluate("(id) => window.twin.screenPositionOf(id)", b["id"])
        if pos and 2 <= pos["x"] < CANVAS[0] - 2 and 2 <= pos["y"] < CANVAS[1] - 2:
            found[k] = (b["id"], pos)
    assert len(found) >= 3, (found, tries)
    page.select_option("#color-by", "none")
    _settle(viewer)
    plain = _canvas_png(viewer, "plain.png")
    page.select_option("#color-by", "height")
    assert page.locator("#legend li").count() >= 3 and "m" in page.inner_text("#legend")
    classes = [_css_rgb(c) for c in page.eval_on_selector_all("#legend .swatch", "s => s.map(e => e.style.background)")]
    _settle(viewer)
    rgb = _canvas_png(viewer, "height.png")
    assert _marker_mask(rgb).mean() < 0.002  # the buildings left the test colour for the height ramp
    unit = [c / np.linalg.norm(c) for c in classes[:len(HEIGHT_EDGES) + 1]]
    seen = {}
    for k, (bid, pos) in sorted(found.items()):
        before, after = _patch(plain, pos["x"], pos["y"]), _patch(rgb, pos["x"], pos["y"])
        assert np.abs(after - before).sum() > 60, (bid, k, before, after)  # not the plain materials any more
        # lit or shaded, the pixel's colour points the way of its own class's colour more than any other's
        cos = [float(after @ u / (np.linalg.norm(after) or 1)) for u in unit]
        assert int(np.argmax(cos)) == k, (bid, k, after.tolist(), [round(c, 3) for c in cos])
        seen[k] = after.round().astype(int).tolist()
    viewer.samples["height_class_rgb"] = seen
    page.select_option("#color-by", "marker")
    _settle(viewer)


def test_colour_by_sunlight_run_against_a_base_run(viewer: Session) -> None:
    """Buildings coloured by a sunlight run's GB 50180 result per feature id, against a base run: the class the page
    gives every loaded building matches the two runs' tables, and passing buildings show green on screen."""
    page, (run_main, run_branch) = viewer.page, viewer.runs
    assert run_branch in page.eval_on_selector("#run-base", "s => [...s.options].map(o => o.value)")
    page.evaluate("([r, b]) => window.twin.setRun(r, b)", [run_branch, run_main])
    page.select_option("#color-by", "sunlight")
    assert "loses compliance" in page.inner_text("#legend") and f"runBase={run_main}" in page.url
    _settle(viewer)
    rgb = _canvas_png(viewer, "sunlight.png")
    assert _marker_mask(rgb).mean() < 0.002  # every building left the test colour

    def passes(run: str) -> dict[str, bool]:
        rows = httpx.get(f"{viewer.base}/runs/{run}/tables/sunlight_buildings", timeout=30, headers=viewer.auth).json()
        return {r["entity_id"]: r["passes"] for r in rows}

    a, b = passes(run_main), passes(run_branch)
    ids = page.evaluate("window.twin.loadedBuildingIds(100000)")
    want = ["none" if i not in b else "lost" if a.get(i) and not b[i] else "gained" if a.get(i) is False and b[i]
            else "passes" if b[i] else "fails" for i in ids]
    got = page.evaluate("(ids) => ids.map((i) => window.twin.sunlightClass(i))", ids)
    assert got == want and "passes" in got
    r, g, bl = (rgb[..., k].astype(int) for k in range(3))
    assert ((g > r + 40) & (g > bl + 40)).mean() > 0.002  # the green of passing buildings (#4caf50, shaded)
    page.evaluate("() => window.twin.setRun('', '')")
    page.select_option("#color-by", "marker")
    _settle(viewer)


def test_layer_drape_and_time_slider(viewer: Session) -> None:
    sess, page = viewer, viewer.page
    layers = httpx.get(f"{sess.base}/layers", headers=sess.auth).json()
    timed = [lyr for lyr in layers if lyr.get("time_bucket")]
    assert timed, [lyr["name"] for lyr in layers]
    # the interpolated surface covers the whole city (station layers only a few cells)
    name = next((lyr["name"] for lyr in timed if "idw" in lyr["name"]), timed[0]["name"])
    page.evaluate("window.twin.render()")
    bare = _canvas_png(sess, "layer-none.png")
    t0 = time.perf_counter()
    page.select_option("#layer", name)
    page.wait_for_function("window.twin.layer() && window.twin.layer().ready", timeout=TIMEOUT_MS)
    sess.timings["layer_drape_s"] = time.perf_counter() - t0
    info = page.evaluate("window.twin.layer()")
    assert info["name"] == name and info["buckets"] > 1 and info["shown"] > 0
    assert page.is_visible("#time") and page.is_visible("#layer-legend")
    q = parse_qs(urlparse([p for p in sess.paths(f"/layers/{name}/cells") if "geojson" in p][0]).query)
    assert q["format"] == ["geojson"] and q["branch"] == ["main"]
    page.evaluate("window.twin.render()")
    before = _canvas_png(sess, "layer-before.png")
    label0 = page.inner_text("#time-label")
    # the label is the bucket in the city's local time (Beijing, UTC+08:00: the store's time zone, from the landing
    # page), with the offset shown
    t0_utc = datetime.fromisoformat(info["t"].replace("Z", "+00:00"))
    assert label0 == f"{(t0_utc + timedelta(hours=8)):%Y-%m-%d %H:%M} (UTC+08:00)", (info["t"], label0)
    assert t0_utc.astimezone(UTC).hour == 16 and label0.endswith("00:00 (UTC+08:00)")  # midnight in Beijing
    assert "times in Asia/Shanghai" in page.inner_text("#layer-info")
    # the drape lies on the terrain only: the buildings keep their exact (marker) colour, the ground changes
    diff = np.abs(before.astype(int) - bare.astype(int)).sum(axis=2)
    buildings = _erode(_marker_mask(bare), 1)
    assert buildings.mean() > 0.005 and (diff[buildings] <= 12).mean() > 0.97, (diff[buildings] > 12).mean()
    assert (diff[~_marker_mask(bare)] > 12).mean() > 0.05
    target = min(info["buckets"] - 1, 12)  # half a day later for an hourly layer
    page.fill("#time", str(target))
    page.wait_for_function(f"window.twin.layer().index === {target} && window.twin.layer().ready",
                           timeout=TIMEOUT_MS)
    page.evaluate("window.twin.render()")
    after = _canvas_png(sess, "layer-after.png")
    assert page.inner_text("#time-label") != label0
    changed = (np.abs(before.astype(int) - after.astype(int)).sum(axis=2) > 12).mean()
    assert changed > 0.005, f"the drape did not change with time ({changed:.4f} of the pixels)"
    sess.timings["layer_pixels_changed"] = round(float(changed), 4)
    # play advances the slider by itself; pause stops it
    page.click("#play")
    page.wait_for_function(f"window.twin.layer().index !== {target}", timeout=10_000)
    page.click("#play")
    assert page.get_attribute("#play", "aria-label") == "play"
    # colours per time step: the ramp spans the shown step's values (another legend, other colours)
    page.wait_for_function("window.twin.layer().ready", timeout=TIMEOUT_MS)
    page.evaluate("window.twin.render()")
    over_all = _canvas_png(sess, "layer-all-steps.png")
    legend_all = (page.inner_text("#layer-min"), page.inner_text("#layer-max"))
    page.check("#layer-per-step")
    page.wait_for_function("window.twin.layer().scale === 'step' && window.twin.layer().ready", timeout=TIMEOUT_MS)
    assert (page.inner_text("#layer-min"), page.inner_text("#layer-max")) != legend_all
    assert "layerScale=step" in page.url
    page.evaluate("window.twin.render()")
    per_step = _canvas_png(sess, "layer-per-step.png")
    assert (np.abs(per_step.astype(int) - over_all.astype(int)).sum(axis=2) > 12).mean() > 0.005
    page.uncheck("#layer-per-step")
    page.wait_for_function("window.twin.layer().scale === 'all' && window.twin.layer().ready", timeout=TIMEOUT_MS)
    assert (page.inner_text("#layer-min"), page.inner_text("#layer-max")) == legend_all
    page.select_option("#layer", "")
    assert page.evaluate("window.twin.layer()") is None
    assert sess.console_errors() == [] and sess.bad_responses() == [] and sess.page.evaluate("window.twin.errors") == []


def test_version_switch_reloads_tilesets_and_features(viewer: Session) -> None:
    sess, page = viewer, viewer.page
    head = httpx.get(f"{sess.base}/commits/latest", headers=sess.auth).json()["version"]
    t0 = time.perf_counter()
    page.select_option("#version", str(head))
    page.wait_for_function(
        f"window.twin.state.version === '{head}' && !window.twin.switching() && window.twin.tilesLoaded()",
        polling=250, timeout=TIMEOUT_MS)
    assert all("error" not in v for v in page.evaluate("window.twin.tilesets()").values())
    sess.timings["version_switch_s"] = time.perf_counter() - t0
    for kind in ("buildings", "terrain", "pointcloud"):
        assert sess.paths(f"/tiles/main/{head}/{kind}/tileset.json"), kind
    assert f"version={head}" in page.url
    # a feature request now asks for that version
    ids = page.evaluate("window.twin.loadedBuildingIds(5)")
    page.evaluate("(id) => window.twin.screenPositionOf(id)", ids[0])
    assert [p for p in sess.paths(f"/collections/buildings/items/{ids[0]}") if f"as_of={head}" in p]
    page.evaluate("window.twin.render()")
    assert _marker_mask(_canvas_png(sess, f"version-{head}.png")).mean() > 0.01
    assert sess.console_errors() == [] and sess.bad_responses() == [] and sess.failed == []
    sess.timings["total_responses"] = len(sess.responses)
    print("viewer e2e timings:", json.dumps({k: round(v, 2) for k, v in sess.timings.items()}))


def test_branch_switch_shows_the_scenario(viewer: Session) -> None:
    sess, page = viewer, viewer.page
    gone = sess.demolished
    on_main = page.evaluate("window.twin.loadedBuildingIds(100000)")
    assert gone in on_main
    assert BRANCH in page.eval_on_selector("#branch", "s => [...s.options].map(o => o.value)")
    t0 = time.perf_counter()
    page.select_option("#branch", BRANCH)
    page.wait_for_function(
        f"window.twin.state.branch === '{BRANCH}' && !window.twin.switching() && window.twin.tilesLoaded()",
        polling=250, timeout=TIMEOUT_MS)
    sess.timings["branch_switch_s"] = time.perf_counter() - t0
    for kind in ("buildings", "terrain", "pointcloud"):
        assert sess.paths(f"/tiles/{BRANCH}/latest/{kind}/tileset.json"), kind
    assert page.input_value("#version") == "latest" and f"branch={BRANCH}" in page.url
    on_branch = page.evaluate("window.twin.loadedBuildingIds(100000)")
    assert gone not in on_branch and len(on_branch) == len(on_main) - 1
    # feature requests follow the branch
    page.evaluate("(id) => window.twin.screenPositionOf(id)", on_branch[0])
    assert [p for p in sess.paths(f"/collections/buildings/items/{on_branch[0]}") if f"branch={BRANCH}" in p]
    assert sess.console_errors() == [] and sess.bad_responses() == [] and sess.page.evaluate("window.twin.errors") == []
    page.select_option("#branch", "main")
    page.wait_for_function("window.twin.state.branch === 'main' && !window.twin.switching() && "
                           "window.twin.tilesLoaded()", polling=250, timeout=TIMEOUT_MS)
    assert gone in page.evaluate("window.twin.loadedBuildingIds(100000)")


def test_missing_tiles_and_failed_requests_are_shown_in_the_page(viewer: Session) -> None:
    sess, page = viewer, viewer.page
    before = len(sess.responses)
    page.evaluate("window.twin.switchTo('main', '999')")  # a version the store does not have (e.g. an old link)
    errors = page.evaluate("window.twin.errors")
    assert any("version 999 is not on branch main" in e for e in errors)
    for kind in ("buildings", "terrain", "pointcloud"):
        assert any(f"{kind} tileset /tiles/main/999/{kind}/tileset.json: HTTP 404" in e for e in errors), errors
    assert page.locator("#errors li").count() >= 3 and page.is_visible("#errors li")
    assert all("error" in v for v in page.evaluate("window.twin.tilesets()").values())
    new_bad = [(u, s) for u, s in sess.responses[before:] if sess.ours(u) and s >= 400]
    assert new_bad and all("/999/" in u or "as_of=999" in u for u, _ in new_bad), new_bad
    # handled: nothing uncaught; the only console errors are the browser's own lines for those 4xx responses
    assert sess.page_errors == []
    assert all("Failed to load resource" in t for t in sess.console_errors()), sess.console_errors()
    # and the viewer recovers on the next switch
    page.evaluate("window.twin.switchTo('main', 'latest')")
    page.wait_for_function("window.twin.tilesLoaded()", polling=250, timeout=TIMEOUT_MS)
    assert all("error" not in v for v in page.evaluate("window.twin.tilesets()").values())


def _docs_page(sess: Session, path: str, selector: str) -> tuple[int, list[str], list[tuple[str, str]], list[str]]:
    """Open ``path`` in a new page of the session's browser; wait until ``selector`` exists. The count of such
    elements, the requests that did not go to our server, the failed requests and the console errors."""
    page = sess.browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    failed: list[tuple[str, str]] = []
    console: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure or "")))
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        t0 = time.perf_counter()
        page.goto(sess.base + path, wait_until="load")
        page.wait_for_selector(selector, state="attached", timeout=TIMEOUT_MS)
        sess.timings[f"{path.strip('/')}_render_s"] = time.perf_counter() - t0
        page.screenshot(path=str(ARTIFACTS / f"{path.strip('/')}.png"))
        n = page.locator(selector).count()
        assert errors == [], errors
        outside = [u for u in requests if not sess.ours(u) and not u.startswith(("data:", "blob:"))]
        return n, outside, failed, console
    finally:
        page.close()


def _operations(sess: Session) -> int:
    doc = httpx.get(f"{sess.base}/openapi.json", timeout=30).json()
    return sum(1 for ops in doc["paths"].values() for m in ops if m in ("get", "post", "put", "patch", "delete"))


def test_swagger_ui_renders_the_operations_offline(viewer: Session) -> None:
    """/docs: Swagger UI from our server (npm swagger-ui-dist) renders every operation of /openapi.json, and the
    page asks nothing of any other host."""
    n, outside, failed, console = _docs_page(viewer, "/docs", ".opblock")
    assert n == _operations(viewer) and n > 20
    assert outside == [] and failed == [] and console == []


def test_redoc_renders_the_operations_offline(viewer: Session) -> None:
    """/redoc: ReDoc's standalone bundle from our server renders every operation; the one outside URL in it (a logo
    on ReDoc's CDN, in its sidebar) is refused by the page's Content-Security-Policy before any request is sent."""
    n, outside, failed, console = _docs_page(viewer, "/redoc", '[data-section-id^="operation/"]')
    assert n == _operations(viewer)
    assert all(f == "csp" for u, f in failed if u in outside) and {u for u, _ in failed} >= set(outside), failed
    assert all("Content Security Policy" in c for c in console), console


def test_the_anonymous_viewer_sees_the_public_city_and_the_planner_all_of_it(viewer: Session) -> None:
    """The demo city's compound is confidential: a page without a key shows every building but those (its tiles are
    the public view's), the signed-in planner's page shows them too; signing out makes the page anonymous again."""
    assert viewer.hidden
    planner = set(viewer.page.evaluate("window.twin.loadedBuildingIds(100000)"))
    assert set(viewer.hidden) <= planner
    anon = viewer.browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        anon.goto(viewer.base + "/viewer/?test=1", wait_until="load")
        anon.wait_for_function("window.twin !== undefined", timeout=TIMEOUT_MS)
        anon.evaluate("window.twin.ready")
        anon.wait_for_function("window.twin.tilesLoaded()", polling=250, timeout=TIMEOUT_MS)
        assert anon.is_visible("#sign-in-form") and anon.is_hidden("#signed-in")
        public = set(anon.evaluate("window.twin.loadedBuildingIds(100000)"))
        assert public and not public & set(viewer.hidden) and public == planner - set(viewer.hidden)
        # a wrong key is a message on the page, and the page stays anonymous
        anon.fill("#api-key", "twin_wrong_key")
        anon.click("#sign-in")
        anon.wait_for_function("document.body.innerText.includes('sign-in:')", timeout=TIMEOUT_MS)
        assert anon.is_visible("#sign-in-form") and "twin_wrong_key" not in anon.content()
    finally:
        anon.close()


def test_traffic_run_against_a_base_run_from_the_link(viewer: Session) -> None:
    """A link with trafficRun, trafficBase and hour (a road-closure scenario's run against main's): the roads are
    drawn on the ground coloured by the change of volume, the closed road as closed, the roads its traffic moved to
    as more (the signs of /runs/{a}/compare/{b}); a click on one shows its row; without the base they are by v/c."""
    sess, page, tr = viewer, viewer.page, viewer.traffic
    q = f"branch={tr['branch']}&trafficRun={tr['closed']}&trafficBase={tr['main']}&hour=8"
    console, responses = len(sess.console), len(sess.responses)
    t0 = time.perf_counter()
    page.goto(f"{sess.base}/viewer/?test=1&{q}", wait_until="load")  # the same tab: still signed in
    page.wait_for_function("window.twin !== undefined", timeout=TIMEOUT_MS)
    page.evaluate("window.twin.ready")
    page.wait_for_function("window.twin.traffic() && window.twin.traffic().ready && window.twin.tilesLoaded()",
                           polling=250, timeout=TIMEOUT_MS)
    sess.timings["traffic_link_s"] = time.perf_counter() - t0
    info = page.evaluate("window.twin.traffic()")
    assert (info["run"], info["base"], info["hour"], info["mode"]) == (tr["closed"], tr["main"], 8, "change"), info
    assert page.input_value("#traffic-run") == tr["closed"] and page.input_value("#traffic-hour") == "8"
    assert "more" in info["legend"] and "closed" in info["legend"] and page.is_visible("#traffic-legend")
    roads = {r["id"]: r for r in page.evaluate("window.twin.trafficRoads()")}
    feats = httpx.get(f"{sess.base}/collections/roads/items?branch={tr['branch']}&limit=10000", headers=sess.auth,
                      timeout=30).json()["features"]
    assert set(roads) == {f["id"] for f in feats if "LineString" in f["geometry"]["type"]}
    closed = roads[tr["road"]]
    assert closed["cls"] == "closed" or closed["volume_diff"] < 0, closed
    # the change per road is the comparison's: every road the page calls more (or less) gained (lost) volume
    cmp = httpx.get(f"{sess.base}/runs/{tr['main']}/compare/{tr['closed']}", headers=sess.auth, timeout=30).json()
    diff = {r["entity_id"]: r["volume_diff"] for r in cmp["entities"]["traffic_roads"] if r["hour"] == 8}
    more = [i for i, r in roads.items() if r["cls"] in ("more", "much_more")]
    assert more and all(diff[i] > 0 for i in more), (more, diff)
    assert all(diff[i] < 0 for i, r in roads.items() if r["cls"] in ("less", "much_less"))
    rgb = _canvas_png(sess, "traffic-change.png")
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    assert ((r > 120) & (r > g + 70) & (r > b + 50)).sum() > 50  # the red of more traffic, draped on the ground
    # a click on the road that gained most (or the next, where that one is hidden) shows its row and its change
    for target in sorted(more, key=lambda i: -roads[i]["volume_diff"])[:3]:
        pos = page.evaluate("(id) => window.twin.roadScreenPosition(id)", target)
        if pos:
            break
    assert pos, more
    box = page.locator("#cesium canvas").first.bounding_box()
    page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
    page.wait_for_function(f"window.twin.selectedRoad() === '{target}'", timeout=TIMEOUT_MS)
    panel = page.inner_text("#details")
    assert "volume change" in panel and "+" in panel and "v/c" in panel and "delay" in panel, panel
    # without the base: v/c classes
    page.select_option("#traffic-base", "")
    page.wait_for_function("window.twin.traffic().mode === 'vc' && window.twin.traffic().ready", timeout=TIMEOUT_MS)
    classes = {r["cls"] for r in page.evaluate("window.twin.trafficRoads()")}
    assert classes & {"light", "moderate", "heavy", "near_capacity", "over_capacity"}, classes
    assert "trafficBase" not in page.url and "hour=8" in page.url
    assert [t for kind, t in sess.console[console:] if kind == "error"] == [] and sess.page_errors == []
    assert [(u, st) for u, st in sess.responses[responses:] if sess.ours(u) and st >= 400] == []
    assert page.evaluate("window.twin.errors") == []
