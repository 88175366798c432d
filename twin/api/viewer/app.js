// twin's web 3D viewer: CesiumJS (served by twin from node_modules, no Cesium ion) over twin's own API.
//
// Tilesets   /tiles/{branch}/{version}/{buildings|terrain|pointcloud}/tileset.json (3D Tiles 1.1)
// Buildings  /collections/buildings/items/{id}?flat=false&branch=&as_of=  (OGC API Features, the nested record;
//            id from the picked feature)
// Imagery    /imagery/tilejson.json, /imagery/{z}/{x}/{y}.png  (Web Mercator XYZ)
// Layers     /layers, /layers/{name}, /layers/{name}/cells?format=geojson|json&res=&start=&end=&branch=&as_of=
// History    /branches, /commits?branch=
// Sunlight   /runs?simulator=sunlight&branch=, /runs/{id}/tables/sunlight_buildings (pass/fail and hours by id)
// Traffic    /runs?simulator=traffic&branch=, /runs/{id} (summary.hours), /runs/{id}/tables/traffic_roads (volume,
//            v/c, times per road and hour), /collections/roads/items?branch=&as_of=&limit= (the centre lines at the
//            run's branch and version, every page)
//
// URL parameters: branch, version (integer or latest), colorBy (none|height|roof_type|rmse|valid|sunlight|
// sunlight_hours|marker), run and runBase (sunlight run ids: colour by the run, and what changed from the base run),
// trafficRun, trafficBase and hour (the traffic run whose roads are drawn, the run it is compared with, the hour),
// layer, res, layerScale (all|step: the drape's colour ramp over every time step or the shown one), tz (the city's
// time zone for time labels: an IANA name or an offset like +08:00), pointcloud=0, test=1 (small canvas, no
// animations, buildings in the marker colour, see docs/viewer.md).
// Test hooks: window.twin (documented in docs/viewer.md).
import * as Cesium from "./cesium/index.js";

const params = new URLSearchParams(location.search);
const TEST = params.get("test") === "1";
const MARKER = "#ff00ff"; // the test colour of buildings: magenta does not occur in imagery or terrain
const KINDS = ["terrain", "buildings", "pointcloud"];
const $ = (id) => document.getElementById(id);

const state = {
  branch: params.get("branch") || "main",
  version: params.get("version") || "latest",
  colorBy: params.get("colorBy") || (TEST ? "marker" : "none"),
  tilesets: {}, // kind -> Cesium3DTileset
  tilesetErrors: {}, // kind -> message
  selected: null, // {id, feature, record}
  layer: null, // {spec, res, buckets, values, cells, frame, shader, index, lo, hi, applied}
  layerScale: params.get("layerScale") === "step" ? "step" : "all", // the drape's ramp: over every time step or this one
  zone: null, // the city's time zone for time labels: {offset (minutes) | iana, label, note}
  errors: [],
  generation: 0, // bumped on every branch/version switch; stale async results are dropped
  switching: 0, // branch/version switches in progress
  frames: 0, // frames rendered since the page was ready
  imagery: null,
  run: params.get("run") || "", // sunlight run whose results colour the buildings
  runBase: params.get("runBase") || "", // the baseline run it is compared with
  runValues: new Map(), // building id -> {passes, worst_hours, compliant_share} of state.run
  baseValues: new Map(), // the same of state.runBase
  trafficRun: params.get("trafficRun") || "", // traffic run whose per-road results colour the roads
  trafficBase: params.get("trafficBase") || "", // the run it is compared with (colours by the change of volume)
  trafficHour: params.get("hour") ?? null, // the hour shown (one of the run's summary.hours)
  trafficRuns: [], // the succeeded traffic runs the selects list
  traffic: null, // {run, base, rows, baseRows (hour -> Map(road id -> row)), roads, hours, primitives, drawn}
  selectedRoad: null, // the road id in the panel
};

// ---------------------------------------------------------------- errors, fetch

function showError(message) {
  const text = String(message);
  state.errors.push(text);
  const li = document.createElement("li");
  li.textContent = text;
  $("errors").append(li);
  while ($("errors").children.length > 5) $("errors").firstElementChild.remove();
  setTimeout(() => li.remove(), TEST ? 600_000 : 15_000);
}

window.addEventListener("error", (e) => showError(`error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => {
  e.preventDefault(); // shown in the page instead of an unhandled rejection in the console
  showError(`error: ${e.reason?.message ?? e.reason}`);
});

class HttpError extends Error {
  constructor(url, status, detail) {
    super(`${url}: HTTP ${status}${detail ? ` — ${detail}` : ""}`);
    this.status = status;
  }
}

// ---------------------------------------------------------------- signing in
// An API key is exchanged for a short-lived bearer token (POST /auth/token); the token (never the key) is kept for
// this tab only (sessionStorage) and sent with every request, the tiles and imagery Cesium loads included. Without
// one the viewer is anonymous and the server answers the public city only.
const TOKEN_KEY = "twin-token";

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function resource(url) {
  // a Cesium resource that carries the credentials (tilesets, imagery templates)
  return new Cesium.Resource({ url, headers: authHeaders() });
}

async function signIn(key) {
  const body = new URLSearchParams({ grant_type: "client_credentials", client_secret: key });
  const r = await fetch("/auth/token", { method: "POST", body, headers: { Accept: "application/json" } });
  if (!r.ok) {
    let detail = "";
    try {
      detail = (await r.json()).detail ?? "";
    } catch {
      /* not JSON */
    }
    throw new HttpError("/auth/token", r.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  sessionStorage.setItem(TOKEN_KEY, (await r.json()).access_token);
  location.reload(); // what the city shows depends on who asks: start again as the new principal
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

async function showPrincipal() {
  let me;
  try {
    me = await getJSON("/auth/whoami");
  } catch (e) {
    if (e.status === 401) sessionStorage.removeItem(TOKEN_KEY); // expired or revoked: anonymous from now on
    showError(`sign-in: ${e.message}`);
    return;
  }
  const named = me.name !== "anonymous";
  $("sign-in-form").hidden = named;
  $("signed-in").hidden = !named;
  $("auth-note").hidden = named;
  $("who").textContent = me.name;
  $("who-clearance").textContent = `clearance ${me.clearance}`;
}

async function getJSON(url) {
  let r;
  try {
    r = await fetch(url, { headers: { Accept: "application/json, application/geo+json", ...authHeaders() } });
  } catch (e) {
    throw new Error(`${url}: ${e.message}`);
  }
  if (!r.ok) {
    let detail = "";
    try {
      detail = (await r.json()).detail ?? "";
    } catch {
      /* not JSON */
    }
    throw new HttpError(url, r.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return r.json();
}

function query(extra = {}) {
  const q = new URLSearchParams({ branch: state.branch });
  if (state.version !== "latest") q.set("as_of", state.version);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null) q.set(k, v);
  return q.toString();
}

function setStatus(text) {
  $("status").textContent = text;
}

function syncUrl() {
  const q = new URLSearchParams(location.search);
  q.set("branch", state.branch);
  q.set("version", state.version);
  q.set("colorBy", state.colorBy);
  if (state.layer) q.set("layer", state.layer.spec.name);
  else q.delete("layer");
  if (state.layerScale === "step") q.set("layerScale", "step");
  else q.delete("layerScale");
  const traffic = [["trafficRun", state.trafficRun], ["trafficBase", state.trafficBase],
    ["hour", state.trafficRun && state.trafficHour !== null ? String(state.trafficHour) : ""]];
  for (const [k, v] of [["run", state.run], ["runBase", state.runBase], ...traffic]) {
    if (v) q.set(k, v);
    else q.delete(k);
  }
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

// ---------------------------------------------------------------- the Cesium viewer (offline: no ion anywhere)

if (TEST) document.body.classList.add("test");
// no Cesium ion here, so no ion logo either: the credit line names CesiumJS (Apache-2.0) in plain text instead
Cesium.CreditDisplay.cesiumCredit = new Cesium.Credit('<span class="twin-cesium-credit">CesiumJS</span>', true);
const viewer = new Cesium.Viewer("cesium", {
  baseLayer: false, // no ion world imagery: our own imagery is added below
  baseLayerPicker: false,
  geocoder: false,
  homeButton: false,
  sceneModePicker: false,
  navigationHelpButton: false,
  animation: false,
  timeline: false,
  fullscreenButton: false,
  infoBox: false,
  selectionIndicator: false,
  requestRenderMode: true, // render only when something changed: idle viewers cost no CPU/GPU
  maximumRenderTimeChange: Infinity,
  msaaSamples: TEST ? 1 : 4,
});
const scene = viewer.scene;
// beyond the city: a neutral ground (GROUND_COLOUR around the city at its ground level, this further out), no void
scene.globe.baseColor = Cesium.Color.fromCssColorString("#565a52");
scene.globe.depthTestAgainstTerrain = false;
scene.globe.enableLighting = false;
if (TEST) {
  scene.skyAtmosphere.show = false;
  scene.skyBox.show = false;
  scene.sun.show = false;
  scene.moon.show = false;
  scene.fog.enabled = false;
  scene.globe.showGroundAtmosphere = false;
  scene.postProcessStages.fxaa.enabled = false;
}
viewer.cesiumWidget.creditContainer.style.display = TEST ? "none" : "";

// a render error stops Cesium's loop: report it in the page (Cesium also shows its own panel)
scene.renderError.addEventListener((_, err) => showError(`render error: ${err?.message ?? err}`));

// ---------------------------------------------------------------- imagery base map

async function loadImagery() {
  try {
    const tj = await getJSON("/imagery/tilejson.json");
    const [w, s, e, n] = tj.bounds ?? [-180, -85.05, 180, 85.05];
    const provider = new Cesium.UrlTemplateImageryProvider({
      url: resource(new URL(tj.tiles?.[0] ?? "/imagery/{z}/{x}/{y}.png", location.href).href),
      tilingScheme: new Cesium.WebMercatorTilingScheme(),
      rectangle: Cesium.Rectangle.fromDegrees(w, s, e, n),
      minimumLevel: tj.minzoom ?? 0,
      maximumLevel: tj.maxzoom ?? 19,
      credit: new Cesium.Credit(tj.attribution || "twin imagery"),
    });
    const layer = viewer.imageryLayers.addImageryProvider(provider);
    layer.errorEvent?.addEventListener((err) => showError(`imagery: ${err?.message ?? err}`));
    provider.errorEvent.addEventListener((err) => {
      // a missing tile at the edge is not worth a message each time; report the first few
      if ((state.imageryFailures = (state.imageryFailures ?? 0) + 1) <= 3) showError(`imagery tile: ${err.message}`);
    });
    state.imagery = { tilejson: tj, rectangle: Cesium.Rectangle.fromDegrees(w, s, e, n) };
  } catch (e) {
    showError(`imagery: ${e.message}`);
  }
}

// ---------------------------------------------------------------- tilesets

function tilesetUrl(kind) {
  const b = encodeURIComponent(state.branch);
  return `/tiles/${b}/${encodeURIComponent(state.version)}/${kind}/tileset.json`;
}

async function loadTileset(kind, generation) {
  const url = tilesetUrl(kind);
  try {
    const ts = await Cesium.Cesium3DTileset.fromUrl(resource(url), {
      maximumScreenSpaceError: kind === "pointcloud" ? 8 : 16,
      showCreditsOnScreen: false,
    });
    if (generation !== state.generation) return; // the user switched branch/version meanwhile
    ts.tileFailed.addEventListener((e) => showError(`${kind} tile ${e.url}: ${e.message}`));
    ts.allTilesLoaded.addEventListener(() => (ts.twinLoaded = true)); // tilesLoaded is also true before any request
    if (kind === "pointcloud") {
      ts.style = new Cesium.Cesium3DTileStyle({ pointSize: TEST ? 2 : 3 });
    }
    if (kind === "buildings") ts.customShader = BUILDING_SHADING;
    ts.show = $(`show-${kind}`).checked;
    scene.primitives.add(ts);
    state.tilesets[kind] = ts;
    delete state.tilesetErrors[kind];
    if (kind === "buildings") applyBuildingStyle();
    if (kind === "terrain") attachDrape();
  } catch (e) {
    const msg = e?.statusCode ? `HTTP ${e.statusCode}` : e?.message ?? String(e);
    state.tilesetErrors[kind] = msg;
    showError(`${kind} tileset ${url}: ${msg}`);
  }
}

async function loadTilesets() {
  const generation = ++state.generation;
  for (const ts of Object.values(state.tilesets)) scene.primitives.remove(ts); // destroys them
  state.tilesets = {};
  state.tilesetErrors = {};
  clearSelection();
  await Promise.all(KINDS.map((k) => loadTileset(k, generation)));
  setLight();
  setGround();
  scene.requestRender();
}

// ---------------------------------------------------------------- light and ground around the city

// A fixed light from the south-south-west, 55° up, in the city's local frame: roofs and the walls the default view
// shows are lit, the others shaded, at any hour (Cesium's default light is the sun at the clock's time: in the
// evening it left every building colour dark grey).
const LIGHT_AZIMUTH = 200;
const LIGHT_ELEVATION = 55;
const GROUND_COLOUR = "#6b6e66";
const GROUND_MARGIN = 3; // the ground reaches this many city widths beyond the city on each side

function cityCentre() {
  const ts = state.tilesets.terrain ?? state.tilesets.buildings ?? state.tilesets.pointcloud;
  if (ts) return Cesium.Cartographic.fromCartesian(ts.boundingSphere.center);
  if (state.imagery) return Cesium.Rectangle.center(state.imagery.rectangle);
  return null;
}

function setLight() {
  const c = cityCentre();
  if (!c) return;
  const enu = Cesium.Transforms.eastNorthUpToFixedFrame(Cesium.Cartographic.toCartesian(c));
  const az = Cesium.Math.toRadians(LIGHT_AZIMUTH);
  const el = Cesium.Math.toRadians(LIGHT_ELEVATION);
  // the direction the light travels: from the sky position (azimuth, elevation) down to the city
  const local = new Cesium.Cartesian3(-Math.sin(az) * Math.cos(el), -Math.cos(az) * Math.cos(el), -Math.sin(el));
  const direction = Cesium.Matrix4.multiplyByPointAsVector(enu, local, new Cesium.Cartesian3());
  scene.light = new Cesium.DirectionalLight({ direction: Cesium.Cartesian3.normalize(direction, direction) });
}

// Buildings are shaded by that light alone, in linear colour: a face's brightness changes (ambient 0.45 plus the
// light's share), never its hue. Cesium's physically based lighting (a sky-coloured ambient, highlights, its tone
// mapping) greyed the pale classes and turned orange into gold. A style colour (REPLACE) reaches the shader as
// written, in sRGB, where the materials' colours are linear: u_styled converts it, so a class shows its legend colour.
const BUILDING_SHADING = new Cesium.CustomShader({
  lightingModel: Cesium.LightingModel.UNLIT,
  uniforms: { u_styled: { type: Cesium.UniformType.FLOAT, value: 0 } },
  fragmentShaderText: `
void fragmentMain(FragmentInput fsInput, inout czm_modelMaterial material) {
  if (u_styled > 0.5) material.diffuse = czm_srgbToLinear(material.diffuse);
  float lambert = max(dot(normalize(fsInput.attributes.normalEC), czm_lightDirectionEC), 0.0);
  material.diffuse *= 0.45 + 0.55 * lambert;
}`,
});

let ground = null;
function setGround() {
  // a flat neutral ground just under the terrain tileset's lowest point, a few city widths around it: the city
  // stands on ground instead of floating over the globe's ellipsoid (the terrain is ~50 m above it in Beijing)
  const region = state.tilesets.terrain?.root?.boundingVolume;
  const rect = region?.rectangle ?? state.imagery?.rectangle;
  if (!rect || (ground && !region?.rectangle)) return; // no terrain now (e.g. an unknown version): keep the ground
  const h = Number.isFinite(region?.minimumHeight) ? region.minimumHeight - 0.5 : 0;
  const key = `${rect.west},${rect.south},${rect.east},${rect.north},${h}`;
  if (ground?.key === key) return;
  if (ground) scene.primitives.remove(ground.primitive);
  const dw = (rect.east - rect.west) * GROUND_MARGIN;
  const dh = (rect.north - rect.south) * GROUND_MARGIN;
  const outer = new Cesium.Rectangle(rect.west - dw, rect.south - dh, rect.east + dw, rect.north + dh);
  const primitive = new Cesium.Primitive({
    geometryInstances: new Cesium.GeometryInstance({
      geometry: new Cesium.RectangleGeometry({ rectangle: outer, height: h, vertexFormat: Cesium.PerInstanceColorAppearance.FLAT_VERTEX_FORMAT }),
      attributes: { color: Cesium.ColorGeometryInstanceAttribute.fromColor(Cesium.Color.fromCssColorString(GROUND_COLOUR)) },
    }),
    appearance: new Cesium.PerInstanceColorAppearance({ flat: true, translucent: false }),
    allowPicking: false,
    asynchronous: false,
  });
  scene.primitives.add(primitive);
  scene.primitives.lowerToBottom(primitive);
  ground = { key, primitive };
}

function flyToCity(duration) {
  const ts = state.tilesets.buildings ?? state.tilesets.terrain ?? state.tilesets.pointcloud;
  if (ts) {
    const bs = ts.boundingSphere;
    const range = Math.max(bs.radius * (TEST ? 1.9 : 2.4), 200);
    viewer.camera.flyToBoundingSphere(bs, {
      offset: new Cesium.HeadingPitchRange(Cesium.Math.toRadians(20), Cesium.Math.toRadians(-50), range),
      duration,
    });
  } else if (state.imagery) {
    viewer.camera.flyTo({ destination: state.imagery.rectangle, duration });
  }
}

// ---------------------------------------------------------------- building colours

// Saturated classes of distinct hue (blue, teal, gold, orange, crimson): a lit or shaded wall changes their
// brightness, not which class they read as (pale middle colours such as #ffffbf turned grey under the light)
const RAMP5 = ["#2f5fd0", "#00a39a", "#e8b400", "#f05000", "#c8102e"];
const NODATA = "#9e9e9e";
const ROOF_COLOURS = {
  flat: "#4e79a7", gable: "#e15759", hip: "#f28e2b", shed: "#edc948", mansard: "#b07aa1", dome: "#76b7b2",
  complex: "#59a14f", unknown: "#bab0ac",
};

function binned(prop, edges, unit) {
  // conditions are evaluated in order and stop at the first true one: missing values never reach the comparisons
  const conditions = [[`\${${prop}} === undefined || \${${prop}} === null || isNaN(\${${prop}})`, `color('${NODATA}')`]];
  const legend = [];
  for (let i = edges.length; i >= 0; i--) {
    const lo = i > 0 ? edges[i - 1] : null;
    const cond = lo === null ? "true" : `\${${prop}} >= ${lo}`;
    conditions.push([cond, `color('${RAMP5[i]}')`]);
  }
  for (let i = 0; i <= edges.length; i++) {
    const lo = i > 0 ? edges[i - 1] : null;
    const hi = i < edges.length ? edges[i] : null;
    const label = lo === null ? `< ${hi} ${unit}` : hi === null ? `≥ ${lo} ${unit}` : `${lo}–${hi} ${unit}`;
    legend.push([RAMP5[i], label]);
  }
  legend.push([NODATA, "no value"]);
  return { conditions, legend };
}

function buildingStyle(by) {
  switch (by) {
    case "height":
      return binned("height", [10, 20, 35, 60], "m");
    case "rmse":
      return binned("rmse", [0.25, 0.5, 1, 2], "m");
    case "roof_type": {
      const conditions = Object.entries(ROOF_COLOURS).map(([k, c]) => [`\${roof_type} === '${k}'`, `color('${c}')`]);
      conditions.push(["true", `color('${NODATA}')`]);
      return { conditions, legend: [...Object.entries(ROOF_COLOURS).map(([k, c]) => [c, k]), [NODATA, "no value"]] };
    }
    case "valid":
      return {
        conditions: [
          ["${valid} === true || ${valid} === 1 || ${valid} === 'true'", "color('#4caf50')"],
          ["${valid} === false || ${valid} === 0 || ${valid} === 'false'", "color('#e53935')"],
          ["true", `color('${NODATA}')`],
        ],
        legend: [["#4caf50", "valid solid"], ["#e53935", "invalid"], [NODATA, "not checked"]],
      };
    case "sunlight":
      return sunlightStyle();
    case "sunlight_hours":
      return sunlightHoursStyle();
    case "marker":
      return { conditions: [["true", `color('${MARKER}')`]], legend: [[MARKER, "all buildings (test colour)"]] };
    default:
      return { conditions: [], legend: [] };
  }
}

// ---------------------------------------------------------------- sunlight results by feature id

const SUN = { lost: "#e53935", fails: "#ff9800", passes: "#4caf50", gained: "#1e88e5", none: NODATA };
const SUN_EDGES = [1, 2, 3, 5];

function sunClass(id) {
  // what a building is in the run (and against the base run): lost / gained compliance, passes, fails, no result
  const v = state.runValues.get(id);
  if (!v) return "none";
  const b = state.runBase ? state.baseValues.get(id) : undefined;
  if (b && b.passes && !v.passes) return "lost";
  if (b && !b.passes && v.passes) return "gained";
  return v.passes ? "passes" : "fails";
}

function byId(colourOf) {
  // a style colour evaluated per feature from its id (thousands of ids would not fit in style conditions)
  const cache = new Map();
  const colour = (f) => {
    const c = colourOf(String(f.getProperty("id")));
    if (!cache.has(c)) cache.set(c, Cesium.Color.fromCssColorString(c));
    return cache.get(c);
  };
  return { evaluate: colour, evaluateColor: (f, result) => Cesium.Color.clone(colour(f), result) };
}

function sunlightStyle() {
  const legend = state.runBase
    ? [[SUN.lost, "loses compliance vs base"], [SUN.fails, "fails (also in base)"], [SUN.gained, "gains compliance"],
       [SUN.passes, "passes"], [SUN.none, "no result (not residential)"]]
    : [[SUN.passes, "passes GB 50180"], [SUN.fails, "fails"], [SUN.none, "no result (not residential)"]];
  if (!state.run) legend.unshift([NODATA, "choose a sunlight run"]);
  return { expression: byId((id) => SUN[sunClass(id)]), legend };
}

function sunlightHoursStyle() {
  const ramp = (h) => {
    if (h === undefined || h === null || Number.isNaN(h)) return NODATA;
    let i = 0;
    while (i < SUN_EDGES.length && h >= SUN_EDGES[i]) i++;
    return RAMP5[i];
  };
  const { legend } = binned("worst_hours", SUN_EDGES, "h");
  return { expression: byId((id) => ramp(state.runValues.get(id)?.worst_hours)), legend };
}

async function runTable(id) {
  const rows = await getJSON(`/runs/${encodeURIComponent(id)}/tables/sunlight_buildings`);
  return new Map(rows.map((r) => [String(r.entity_id), r]));
}

async function loadRuns() {
  // the sunlight runs this branch sees (for colouring) and every sunlight run (as the base of a comparison)
  const [own, all] = await Promise.all([
    getJSON(`/runs?simulator=sunlight&branch=${encodeURIComponent(state.branch)}`).catch(() => []),
    getJSON("/runs?simulator=sunlight").catch(() => []),
  ]);
  const label = (r) => `${r.id} · ${r.branch} v${r.version} · ${String(r.submitted).slice(0, 16).replace("T", " ")}`;
  const ok = (r) => r.status === "succeeded";
  $("run").replaceChildren(new Option("— none —", ""), ...own.filter(ok).map((r) => new Option(label(r), r.id)));
  $("run-base").replaceChildren(new Option("— none —", ""), ...all.filter(ok).map((r) => new Option(label(r), r.id)));
  for (const [sel, key] of [[$("run"), "run"], [$("run-base"), "runBase"]]) {
    if (state[key] && ![...sel.options].some((o) => o.value === state[key])) sel.append(new Option(state[key], state[key]));
    sel.value = state[key];
  }
  await setRun(state.run, state.runBase);
}

async function setRun(run, base) {
  state.run = run || "";
  state.runBase = base || "";
  try {
    state.runValues = state.run ? await runTable(state.run) : new Map();
    state.baseValues = state.runBase ? await runTable(state.runBase) : new Map();
  } catch (e) {
    showError(`sunlight run: ${e.message}`);
  }
  syncUrl();
  if (state.colorBy.startsWith("sunlight")) applyBuildingStyle();
}

function applyBuildingStyle() {
  const { conditions, legend, expression } = buildingStyle(state.colorBy);
  const ts = state.tilesets.buildings;
  if (ts) {
    // plain: the tiles' own materials (walls, terracotta roofs); by attribute: the class colour replaces them
    const plain = state.colorBy === "none";
    ts.colorBlendMode = plain ? Cesium.Cesium3DTileColorBlendMode.HIGHLIGHT : Cesium.Cesium3DTileColorBlendMode.REPLACE;
    BUILDING_SHADING.setUniform("u_styled", plain ? 0 : 1);
    ts.style = plain ? undefined : new Cesium.Cesium3DTileStyle({ color: expression ? "color('white')" : { conditions } });
    if (expression && ts.style) ts.style.color = expression;
  }
  const ul = $("legend");
  ul.replaceChildren(
    ...legend.map(([c, label]) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = c;
      li.append(sw, document.createTextNode(label));
      return li;
    }),
  );
  if (state.selected?.feature) {
    // the new style colours every feature again (the selection included) on the next frame: highlight after it
    const sel = state.selected;
    const off = scene.postRender.addEventListener(() => {
      off();
      if (state.selected === sel) highlight(sel.feature);
      scene.requestRender();
    });
  }
  scene.requestRender();
}

// ---------------------------------------------------------------- picking and the building panel

function pickedBuildingId(position) {
  const picked = scene.pick(position);
  const ts = state.tilesets.buildings;
  if (!(picked instanceof Cesium.Cesium3DTileFeature) || !ts || picked.tileset !== ts) return null;
  const id = picked.getProperty("id");
  return id === undefined || id === null ? null : { id: String(id), feature: picked };
}

function highlight(feature) {
  try {
    if (state.selected && state.selected.feature === feature) state.selected.colour = Cesium.Color.clone(feature.color);
    feature.color = Cesium.Color.YELLOW;
  } catch {
    /* the feature's tile was unloaded */
  }
}

function clearSelection() {
  const f = state.selected?.feature;
  const colour = state.selected?.colour;
  state.selected = null;
  state.selectedRoad = null;
  if (f && colour) {
    try {
      f.color = colour; // back to its style colour (or the plain white that keeps the material)
    } catch {
      /* its tile was unloaded or the tileset destroyed */
    }
  }
  $("details").hidden = true;
  scene.requestRender();
}

function cell(v) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/\.?0+$/, "");
  if (Array.isArray(v)) return v.map(cell).join(", ") || "—";
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => `${k}: ${cell(x)}`).join(", ");
  const iso = typeof v === "string" && v.match(/^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$/);
  if (iso) return `${iso[1]} ${iso[2]}${iso[5] === "Z" ? " UTC" : iso[5] ? ` ${iso[5]}` : ""}`;
  return String(v);
}

function table(rows) {
  // rows of [label, value, class, raw key (the row's tooltip: where the value is in the record), value tooltip]
  const t = document.createElement("table");
  for (const [k, v, cls, key, tip] of rows) {
    const tr = t.insertRow();
    const th = document.createElement("th");
    th.textContent = k;
    if (key) {
      th.title = key;
      tr.dataset.key = key;
    }
    const td = tr.insertCell();
    td.textContent = cell(v);
    if (cls) td.className = cls;
    if (tip) td.title = tip;
    tr.prepend(th);
  }
  return t;
}

// plain-language names of the record's keys and of the quality codes (the raw key stays as the row's tooltip)
const ATTRIBUTE_LABELS = {
  area_m2: ["footprint area", "m²"], ground_z: ["ground level", "m"], roof_z: ["roof level", "m"],
  ndvi_mean: ["greenness (mean NDVI)"], cadastre_id: ["cadastre id"], id: ["source id"], change: ["change detected"],
  registered: ["in the cadastre"], detected_area_m2: ["detected footprint area", "m²"],
  valid_from_earliest: ["exists since (earliest)"], valid_to_earliest: ["gone since (earliest)"],
};
const CODE_LABELS = {
  lod22_roof_partition: "LoD2.2 roof from a partition of the roof planes",
  lod22_parametric_roof: "LoD2.2 roof from a parametric roof shape",
  lod22_fallback_lod13: "no LoD2.2 roof could be fitted: the LoD1.3 solid stands in",
  lod22_none: "no LoD2.2 solid",
  complex_roof: "roof too complex for a LoD2.2 model",
  complex_footprint: "footprint too complex for a LoD2.2 model",
  too_few_points: "too few LiDAR points",
  no_points: "no LiDAR points",
  no_roof_points: "no LiDAR points on the roof",
  too_few_roof_points: "too few LiDAR points on the roof",
  no_ground_points: "no LiDAR ground points around it",
  footprint_repaired: "footprint geometry repaired",
  multipolygon_largest_part: "footprint in several parts: the largest one modelled",
  lod_from_footprint_height: "solid from the footprint and a given height (scenario edit)",
};

function plainCode(code) {
  const c = String(code);
  if (CODE_LABELS[c]) return CODE_LABELS[c];
  if (c.startsWith("conflation:")) return `sources disagree: ${c.slice(11).replaceAll("_", " ")}`;
  return c.replaceAll("_", " ");
}

function humanKey(k) {
  return String(k).replaceAll("_", " ");
}

function perLod(v, unit, digits) {
  // {"1.2": 0.84, "2.2": 0.37} -> "LoD1.2 0.84 m · LoD2.2 0.37 m"
  if (v === null || v === undefined) return null;
  const num = (x) => (typeof x === "number" ? x.toLocaleString("en", { maximumFractionDigits: digits }) : cell(x));
  if (typeof v !== "object") return `${num(v)} ${unit}`;
  const entries = Object.entries(v);
  return entries.length ? entries.map(([k, x]) => `LoD${k} ${num(x)} ${unit}`).join(" · ") : null;
}

function codes(list) {
  if (!Array.isArray(list)) return [list, undefined];
  return list.length ? [list.map(plainCode).join("; "), list.join(", ")] : ["none", undefined];
}

function heading(text) {
  const h = document.createElement("h3");
  h.textContent = text;
  return h;
}

async function showBuilding(id, feature) {
  if (state.selected?.feature) clearSelection();
  state.selectedRoad = null;
  state.selected = { id, feature, record: null, loading: true };
  if (feature) highlight(feature);
  scene.requestRender();
  $("details").hidden = false;
  $("building-id").textContent = id;
  $("building-name").textContent = "building";
  $("building-place").textContent = "";
  const body = $("building-body");
  body.replaceChildren(document.createTextNode("loading…"));
  // the nested record (attributes, quality, provenance as objects), not the flat columns GIS clients get
  const url = `/collections/buildings/items/${encodeURIComponent(id)}?${query({ flat: "false" })}`;
  const generation = state.generation;
  try {
    const rec = await getJSON(url);
    if (state.selected?.id !== id || generation !== state.generation) return;
    state.selected.record = rec;
    renderBuilding(rec, body);
  } catch (e) {
    if (state.selected?.id !== id) return;
    body.replaceChildren(document.createTextNode(`could not load the record: ${e.message}`));
    showError(`building ${id}: ${e.message}`);
  } finally {
    if (state.selected?.id === id) state.selected.loading = false;
  }
}

function renderBuilding(rec, body) {
  const p = rec.properties ?? {};
  const attrs = p.attributes ?? {};
  const q = p.quality ?? {};
  // the name and where it is first; the id under it
  $("building-name").textContent = attrs.name ?? p.name ?? "unnamed building";
  $("building-place").textContent = [attrs.district ?? p.district, p.use ?? attrs.use].filter((x) => x).join(" · ");
  const parts = [];
  const rows = [
    ["height", p.height != null ? `${cell(p.height)} m` : null, "", "height"],
    ["roof type", p.roof_type ?? attrs.roof_type, "", "roof_type"],
    ["use", p.use ?? attrs.use, "", "use"],
    ["storeys", p.storeys ?? attrs.storeys, "", "storeys"],
    ["LoD", p.lod ?? (Array.isArray(p.lods) ? p.lods.join(", ") : undefined), "", "lods"],
  ];
  for (const [k, v] of Object.entries(attrs)) {
    if (["name", "district", "use", "roof_type", "storeys"].includes(k)) continue;
    const [label, unit] = ATTRIBUTE_LABELS[k] ?? [humanKey(k)];
    rows.push([label, unit && typeof v === "number" ? `${cell(v)} ${unit}` : v, "", `attributes.${k}`]);
  }
  rows.push(
    ["data classification", p.classification, "", "classification"],
    ["exists from", p.valid_from, "", "valid_from"],
    ["exists until", p.valid_to, "", "valid_to"],
    ["stored in version", p.store_version ?? p._store?.version ?? p.version, "", "store_version"],
  );
  parts.push(table(rows.filter(([, v]) => v !== undefined && v !== null)));
  parts.push(heading("quality"));
  const [errs, errCodes] = codes(q.errors ?? []);
  const [notes, noteCodes] = codes(q.flags ?? []);
  const qrows = [
    ["fit error (RMSE)", perLod(q.rmse, "m", 2), "", "quality.rmse"],
    ["valid solid", q.valid === true ? "yes" : q.valid === false ? "no" : "not checked",
      q.valid === true ? "good" : q.valid === false ? "bad" : "", "quality.valid"],
    ["validation errors", errs, errs !== "none" ? "bad" : "", "quality.errors", errCodes],
    ["LiDAR point density", q.point_density != null ? `${cell(q.point_density)} points/m²` : null, "", "quality.point_density"],
    ["roof without LiDAR points", q.nodata_fraction != null ? `${cell(100 * q.nodata_fraction)} %` : null, "", "quality.nodata_fraction"],
    ["roof parts (LoD1.3)", q.lod13_parts, "", "quality.lod13_parts"],
    ["volume", perLod(q.volume_m3, "m³", 0), "", "quality.volume_m3"],
    ["notes", notes, "", "quality.flags", noteCodes],
  ];
  const known = ["rmse", "valid", "errors", "point_density", "nodata_fraction", "lod13_parts", "volume_m3", "flags"];
  for (const [k, v] of Object.entries(q)) if (!known.includes(k)) qrows.push([humanKey(k), v, "", `quality.${k}`]);
  parts.push(table(qrows.filter(([, v]) => v !== undefined && v !== null)));
  parts.push(heading("provenance"));
  const prov = Array.isArray(p.provenance) ? p.provenance : [];
  if (!prov.length) parts.push(document.createTextNode("none recorded"));
  else {
    const t = document.createElement("table");
    t.className = "provenance";
    const hr = t.insertRow();
    for (const h of ["what", "method", "source", "acquired"]) {
      const th = document.createElement("th");
      th.textContent = h;
      hr.append(th);
    }
    for (const pr of prov) {
      const tr = t.insertRow();
      for (const v of [pr.attribute ?? "record", pr.method, pr.source_asset_id, pr.acquired]) tr.insertCell().textContent = cell(v);
    }
    parts.push(t);
  }
  const sun = state.runValues.get(String(rec.id));
  if (sun) {
    const base = state.baseValues.get(String(rec.id));
    parts.push(heading(`sunlight (${state.run})`));
    parts.push(table([
      ["passes GB 50180", sun.passes, sun.passes ? "good" : "bad"],
      ["worst window", `${cell(sun.worst_hours)} h (required ${cell(sun.required_hours)} h)`],
      ["compliant windows", `${cell(100 * sun.compliant_share)} % of ${sun.windows}`],
      ...(base ? [["base run", `${base.passes ? "passes" : "fails"}, worst ${cell(base.worst_hours)} h`]] : []),
    ]));
  }
  const links = document.createElement("p");
  const hist = document.createElement("a");
  hist.href = `/entities/${encodeURIComponent(rec.id)}/history?branch=${encodeURIComponent(state.branch)}`;
  hist.textContent = "history (JSON)";
  hist.target = "_blank";
  links.append(hist);
  parts.push(links);
  const det = document.createElement("details");
  const sum = document.createElement("summary");
  sum.textContent = "full record";
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(rec, null, 1);
  det.append(sum, pre);
  parts.push(det);
  body.replaceChildren(...parts);
}

const handler = new Cesium.ScreenSpaceEventHandler(scene.canvas);
handler.setInputAction((click) => {
  const hit = pickedBuildingId(click.position);
  const road = hit ? null : pickedRoadId(click.position);
  if (hit) showBuilding(hit.id, hit.feature);
  else if (road) showRoad(road);
  else clearSelection();
}, Cesium.ScreenSpaceEventType.LEFT_CLICK);
$("close-details").addEventListener("click", clearSelection);

// ---------------------------------------------------------------- H3 layer drape with a time slider
//
// The cells are painted into a texture (a canvas in metres of a local east-north frame at the cells' centre) that a
// custom shader of the terrain tileset blends into the terrain's own colour: the drape lies on the terrain and on
// nothing else — not on the buildings (a GroundPrimitive classifies every 3D tileset, ours are all 3D tilesets),
// not on the globe around the city. A time step repaints the canvas and swaps the texture; the shader stays.

const VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];
const VIRIDIS_RGB = VIRIDIS.map((c) => Cesium.Color.fromCssColorString(c));
const LAYER_ALPHA = 0.55;
const DRAPE_MAX_PX = 1024; // the drape texture's longer side
const DRAPE_SHADER = `
void fragmentMain(FragmentInput fsInput, inout czm_modelMaterial material) {
  vec3 p = (u_toLocal * vec4(fsInput.attributes.positionWC, 1.0)).xyz;
  vec2 uv = (p.xy - u_extent.xy) / (u_extent.zw - u_extent.xy);
  if (uv.x < 0.0 || uv.y < 0.0 || uv.x > 1.0 || uv.y > 1.0) return;
  // mixed as a translucent overlay is on screen, in sRGB (the canvas's colours; the terrain's here is linear)
  vec4 c = texture(u_drape, uv);
  material.diffuse = czm_srgbToLinear(mix(czm_linearToSrgb(material.diffuse), c.rgb, c.a * u_alpha));
}`;

function rampColour(v, lo, hi) {
  const t = hi > lo ? Math.min(1, Math.max(0, (v - lo) / (hi - lo))) : 0.5;
  const x = t * (VIRIDIS_RGB.length - 1);
  const i = Math.min(VIRIDIS_RGB.length - 2, Math.floor(x));
  return Cesium.Color.lerp(VIRIDIS_RGB[i], VIRIDIS_RGB[i + 1], x - i, new Cesium.Color());
}

function percentiles(values) {
  // the colour domain: 2nd–98th percentile, so one outlier does not wash the ramp out
  const all = [...values].sort((a, b) => a - b);
  const pct = (p) => (all.length ? all[Math.min(all.length - 1, Math.max(0, Math.round(p * (all.length - 1))))] : 0);
  return [pct(0.02), pct(0.98)];
}

function drapeFrame(rings) {
  // cell outlines in metres east / north of their centre, and the texture's extent and size
  let lon = 0;
  let lat = 0;
  let n = 0;
  for (const ring of rings.values()) for (const [x, y] of ring) (lon += x), (lat += y), (n += 1);
  const enu = Cesium.Transforms.eastNorthUpToFixedFrame(Cesium.Cartesian3.fromDegrees(lon / n, lat / n, 0));
  const toLocal = Cesium.Matrix4.inverseTransformation(enu, new Cesium.Matrix4());
  const local = new Map();
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  const q = new Cesium.Cartesian3();
  for (const [c, ring] of rings) {
    const pts = ring.map(([x, y]) => {
      Cesium.Matrix4.multiplyByPoint(toLocal, Cesium.Cartesian3.fromDegrees(x, y, 0, undefined, q), q);
      [x0, y0, x1, y1] = [Math.min(x0, q.x), Math.min(y0, q.y), Math.max(x1, q.x), Math.max(y1, q.y)];
      return [q.x, q.y];
    });
    local.set(c, pts);
  }
  const pad = 2;
  [x0, y0, x1, y1] = [x0 - pad, y0 - pad, x1 + pad, y1 + pad];
  const scale = DRAPE_MAX_PX / Math.max(x1 - x0, y1 - y0, 1);
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.ceil((x1 - x0) * scale));
  canvas.height = Math.max(1, Math.ceil((y1 - y0) * scale));
  return { toLocal, extent: new Cesium.Cartesian4(x0, y0, x0 + canvas.width / scale, y0 + canvas.height / scale), local, scale, canvas };
}

function drapeShader(frame) {
  return new Cesium.CustomShader({
    uniforms: {
      u_toLocal: { type: Cesium.UniformType.MAT4, value: frame.toLocal },
      u_extent: { type: Cesium.UniformType.VEC4, value: frame.extent },
      u_alpha: { type: Cesium.UniformType.FLOAT, value: LAYER_ALPHA },
      u_drape: { type: Cesium.UniformType.SAMPLER_2D, value: drapeTexture(frame) },
    },
    fragmentShaderText: DRAPE_SHADER,
  });
}

function drapeTexture(frame) {
  const { width, height } = frame.canvas;
  const pixels = frame.canvas.getContext("2d", { willReadFrequently: true }).getImageData(0, 0, width, height).data;
  // canvas row 0 is the south edge (y grows north below), texture row 0 is v = 0: no flip needed
  return new Cesium.TextureUniform({ typedArray: new Uint8Array(pixels.buffer), width, height, repeat: false });
}

function attachDrape() {
  // the terrain tileset of the current branch / version carries the drape's shader (a new tileset gets it too)
  const ts = state.tilesets.terrain;
  const shader = state.layer?.shader;
  if (ts && ts.customShader !== shader) ts.customShader = shader;
  scene.requestRender();
}

async function loadLayerList() {
  const sel = $("layer");
  const keep = state.layer?.spec.name ?? params.get("layer") ?? "";
  try {
    const layers = await getJSON(`/layers?${query()}`);
    sel.replaceChildren(new Option("— none —", ""));
    for (const l of layers) {
      const label = `${l.name}${l.time_bucket ? ` (${l.time_bucket})` : ""}`;
      sel.append(new Option(label, l.name));
    }
    sel.value = layers.some((l) => l.name === keep) ? keep : "";
  } catch (e) {
    showError(`layers: ${e.message}`);
  }
  return sel.value;
}

function removeLayer() {
  stopPlay();
  const shader = state.layer?.shader;
  state.layer = null;
  attachDrape();
  if (shader) {
    // the tiles drop the shader on the next frame; free its textures after that
    const off = scene.postRender.addEventListener(() => {
      off();
      shader.destroy();
    });
  }
  $("time-row").hidden = true;
  $("scale-row").hidden = true;
  $("layer-legend").hidden = true;
  $("layer-info").textContent = "";
  $("layer-res").disabled = true;
  $("res-label").hidden = true;
  scene.requestRender();
}

async function loadLayer(name, res) {
  removeLayer();
  syncUrl();
  if (!name) return;
  const generation = state.generation;
  const info = $("layer-info");
  info.textContent = "loading…";
  try {
    const spec = await getJSON(`/layers/${encodeURIComponent(name)}?${query()}`);
    const resolutions = spec.resolutions;
    if (!resolutions.includes(res)) res = resolutions[resolutions.length - 1];
    const rs = $("layer-res");
    rs.replaceChildren(...resolutions.map((r) => new Option(String(r), String(r))));
    rs.value = String(res);
    rs.disabled = false;
    $("res-label").hidden = false;
    const base = `/layers/${encodeURIComponent(name)}/cells?`;
    // polygons once per cell: a time layer is re-aggregated to one long bucket (or read whole if refused)
    let geo;
    if (spec.time_bucket) {
      try {
        geo = await getJSON(base + query({ res, format: "geojson", bucket: "52w" }));
      } catch {
        geo = await getJSON(base + query({ res, format: "geojson" }));
      }
    } else geo = await getJSON(base + query({ res, format: "geojson" }));
    const rows = spec.time_bucket ? await getJSON(base + query({ res, format: "json" })) : null;
    if (generation !== state.generation) return;
    const rings = new Map();
    for (const f of geo.features) if (!rings.has(f.properties.cell)) rings.set(f.properties.cell, f.geometry.coordinates[0]);
    const values = new Map(); // t ("" for static) -> Map(cell -> value)
    const add = (t, c, v) => {
      if (!values.has(t)) values.set(t, new Map());
      if (v !== null && v !== undefined && Number.isFinite(v)) values.get(t).set(c, v);
    };
    if (rows) for (const r of rows) add(r.t ?? "", r.cell, r.value);
    else for (const f of geo.features) add(f.properties.t ?? "", f.properties.cell, f.properties.value);
    const buckets = [...values.keys()].sort();
    const [lo, hi] = percentiles([...values.values()].flatMap((m) => [...m.values()]));
    const frame = rings.size ? drapeFrame(rings) : null;
    const shader = frame ? drapeShader(frame) : null;
    state.layer = { spec, res, buckets, values, cells: [...rings.keys()], frame, shader, index: 0, lo, hi, applied: -1 };
    attachDrape();
    $("layer-unit").textContent = spec.unit === "1" ? "" : spec.unit;
    $("layer-legend").hidden = false;
    const slider = $("time");
    slider.max = String(Math.max(0, buckets.length - 1));
    slider.value = "0";
    $("time-row").hidden = !spec.time_bucket;
    $("scale-row").hidden = !spec.time_bucket;
    const zone = spec.time_bucket ? cityZone() : null;
    info.textContent = `${spec.variable}: ${rings.size} cells at res ${res}` +
      (spec.time_bucket ? `, ${buckets.length} × ${spec.time_bucket}, times in ${zone.label}` : "") +
      (spec.description ? ` — ${spec.description}` : "");
    if (zone) info.title = zone.note;
    setBucket(0);
    syncUrl();
  } catch (e) {
    info.textContent = "";
    showError(`layer ${name}: ${e.message}`);
  }
}

function setBucket(i) {
  const L = state.layer;
  if (!L) return;
  L.index = Math.max(0, Math.min(L.buckets.length - 1, i));
  $("time").value = String(L.index);
  const t = L.buckets[L.index];
  const label = $("time-label");
  label.textContent = t ? localTime(t) : "";
  label.title = t ? `${t.replace("T", " ").replace(/:00(\.0+)?Z$/, "")} UTC` : "";
  colourLayer();
}

function colourLayer() {
  // paint the current step's cells (ramp over every step, or over this step with "colours per time step"), swap
  // the drape's texture, and count it applied once a frame has drawn with it
  const L = state.layer;
  if (!L?.frame) return;
  L.applied = -1;
  const vals = L.values.get(L.buckets[L.index]) ?? new Map();
  const [lo, hi] = state.layerScale === "step" ? percentiles(vals.values()) : [L.lo, L.hi];
  $("layer-min").textContent = cell(lo);
  $("layer-max").textContent = cell(hi);
  const { canvas, local, extent, scale } = L.frame;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(20, 20, 20, 0.45)";
  for (const c of L.cells) {
    const v = vals.get(c);
    if (v === undefined) continue;
    ctx.beginPath();
    for (const [x, y] of local.get(c)) ctx.lineTo((x - extent.x) * scale, (y - extent.y) * scale);
    ctx.closePath();
    ctx.fillStyle = rampColour(v, lo, hi).toCssColorString();
    ctx.fill();
    ctx.stroke();
  }
  L.shader.setUniform("u_drape", drapeTexture(L.frame));
  const index = L.index;
  const mode = state.layerScale;
  const off = scene.postRender.addEventListener(() => {
    off();
    if (state.layer === L && L.index === index && state.layerScale === mode) L.applied = index;
  });
  scene.requestRender();
}

// ---------------------------------------------------------------- the city's local time

// The zone of time labels: ?tz= (an IANA name or an offset), else the server's (`time_zone` of the landing page,
// when it states one), else the offset of the city's longitude (15° an hour; right for Beijing, a last resort).
function parseOffset(text) {
  const m = String(text).trim().match(/^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$/i);
  if (m) return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3] ?? 0));
  return /^(Z|UTC|GMT)$/i.test(String(text).trim()) ? 0 : null;
}

function offsetText(minutes) {
  if (!minutes) return "UTC";
  const a = Math.abs(minutes);
  return `UTC${minutes < 0 ? "-" : "+"}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}`;
}

function zoneFrom(text, source) {
  if (!text) return null;
  const off = parseOffset(text);
  if (off !== null) return { offset: off, label: offsetText(off), note: `${offsetText(off)} (${source})` };
  try {
    new Intl.DateTimeFormat("en", { timeZone: text }); // throws on an unknown zone
    return { iana: text, label: text, note: `${text} (${source})` };
  } catch {
    showError(`unknown time zone ${text} (${source}); times are shown in UTC`);
    return { offset: 0, label: "UTC", note: "UTC" };
  }
}

function cityZone() {
  if (state.zone) return state.zone;
  const c = cityCentre();
  if (!c) return { offset: 0, label: "UTC", note: "UTC (the city's position is not known yet)" };
  const off = Math.round(Cesium.Math.toDegrees(c.longitude) / 15) * 60;
  state.zone = { offset: off, label: offsetText(off), note: `${offsetText(off)}, from the city's longitude: the server states no time zone` };
  return state.zone;
}

async function loadZone() {
  state.zone = zoneFrom(params.get("tz"), "from the link's tz parameter");
  if (state.zone) return;
  try {
    const landing = await getJSON("/?f=json");
    state.zone = zoneFrom(landing.time_zone, "the city's time zone, from the server");
  } catch {
    /* no landing page: the longitude's offset below */
  }
}

function localTime(iso) {
  // "2024-05-27 00:00 (UTC+08:00)": the instant in the city's zone, with the zone's offset at that instant
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const z = cityZone();
  if (z.iana) {
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
      timeZone: z.iana, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      hourCycle: "h23", timeZoneName: "longOffset",
    }).formatToParts(d).map((p) => [p.type, p.value]));
    const off = parseOffset(parts.timeZoneName.replace(/^GMT$/, "UTC")) ?? 0;
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} (${offsetText(off)})`;
  }
  const local = new Date(d.getTime() + z.offset * 60_000).toISOString();
  return `${local.slice(0, 10)} ${local.slice(11, 16)} (${offsetText(z.offset)})`;
}

let playTimer = null;
function stopPlay() {
  if (playTimer) clearInterval(playTimer);
  playTimer = null;
  $("play").textContent = "▶";
  $("play").setAttribute("aria-label", "play");
}
function togglePlay() {
  if (playTimer) return stopPlay();
  const L = state.layer;
  if (!L || L.buckets.length < 2) return;
  $("play").textContent = "⏸";
  $("play").setAttribute("aria-label", "pause");
  playTimer = setInterval(() => {
    if (!state.layer) return stopPlay();
    setBucket((state.layer.index + 1) % state.layer.buckets.length);
  }, TEST ? 250 : 600);
}

// ---------------------------------------------------------------- traffic results on the roads
//
// A traffic run's per-road table (traffic_roads: a row per road and hour) colours the road centre lines, draped on
// the terrain (GroundPolylinePrimitive: clamped to the terrain tileset, whatever its height): by v/c, or with a base
// run by the change of volume (more traffic red, less blue: where the traffic of a closed road goes). Width grows
// with the volume. The roads are those of the run's own state (its branch and version, from OGC API Features), plus
// the base run's roads it lacks.

const VC_EDGES = [0.5, 0.75, 0.9, 1];
const VC_CLASSES = [
  ["light", "#1a9850", "v/c < 0.5"],
  ["moderate", "#fee08b", "v/c 0.5–0.75"],
  ["heavy", "#fc8d59", "v/c 0.75–0.9"],
  ["near_capacity", "#d73027", "v/c 0.9–1.0"],
  ["over_capacity", "#67000d", "v/c ≥ 1.0 (at or over capacity)"],
];
const DIFF_EDGES = [-100, -10, 10, 100]; // veh/h, run − base
const DIFF_CLASSES = [
  ["much_less", "#2166ac", "> 100 veh/h less"],
  ["less", "#67a9cf", "10–100 veh/h less"],
  ["same", "#d9d9d9", "within ± 10 veh/h"],
  ["more", "#ef8a62", "10–100 veh/h more"],
  ["much_more", "#b2182b", "≥ 100 veh/h more"],
];
const ROAD_CLOSED = ["closed", "#111111", "closed or cut off: no traffic (dashed)"];
const ROAD_NONE = ["none", NODATA, "no result (not in the road network)"];
const ROAD_COLOURS = Object.fromEntries([...VC_CLASSES, ...DIFF_CLASSES, ROAD_CLOSED, ROAD_NONE].map(([k, c]) => [k, c]));
const ROAD_WIDTH = { min: 2, max: 10, none: 1.5, closed: 3 }; // screen pixels; the width grows with √volume

const trafficCache = { tables: new Map(), roads: new Map() }; // run id -> hour -> Map(road id -> row); state -> roads

function binOf(v, edges) {
  let i = 0;
  while (i < edges.length && v >= edges[i]) i++; // a class holds its lower edge
  return i;
}

async function trafficTable(id) {
  // every hour's rows of a run, by hour and road id (a run's results never change: cached)
  if (!trafficCache.tables.has(id)) {
    const rows = await getJSON(`/runs/${encodeURIComponent(id)}/tables/traffic_roads`);
    const byHour = new Map();
    for (const r of rows) {
      const h = Number(r.hour);
      if (!byHour.has(h)) byHour.set(h, new Map());
      byHour.get(h).set(String(r.entity_id), r);
    }
    trafficCache.tables.set(id, byHour);
  }
  return trafficCache.tables.get(id);
}

function roadLines(geometry) {
  // the centre lines of a road as [[lon, lat], …] lists (areas are not drawn)
  if (geometry?.type === "LineString") return [geometry.coordinates];
  if (geometry?.type === "MultiLineString") return geometry.coordinates;
  return [];
}

async function roadsAt(branch, version) {
  // the roads of a state from OGC API Features (every page), by id: {id, name, road_class, lanes, closed, lines}
  const key = `${branch}@${version}`;
  if (!trafficCache.roads.has(key)) {
    const roads = new Map();
    let url = `/collections/roads/items?${new URLSearchParams({ branch, as_of: String(version), limit: "10000" })}`;
    while (url) {
      const page = await getJSON(url);
      for (const f of page.features ?? []) {
        const p = f.properties ?? {};
        const closed = [p.closed, p["attributes.closed"], p.attributes?.closed].some((v) => v === true || v === "true");
        roads.set(String(f.id), { id: String(f.id), name: p.name, road_class: p.road_class, lanes: p.lanes, closed,
                                  lines: roadLines(f.geometry) });
      }
      const next = (page.links ?? []).find((l) => l.rel === "next")?.href;
      url = next && (page.features ?? []).length ? next : null;
    }
    trafficCache.roads.set(key, roads);
  }
  return trafficCache.roads.get(key);
}

async function runRecord(id, list) {
  return list.find((r) => r.id === id) ?? (await getJSON(`/runs/${encodeURIComponent(id)}`));
}

async function loadTrafficRuns() {
  // the traffic runs this branch sees (to show) and every traffic run (as the base of a comparison)
  const [own, all] = await Promise.all([
    getJSON(`/runs?simulator=traffic&branch=${encodeURIComponent(state.branch)}`).catch(() => []),
    getJSON("/runs?simulator=traffic").catch(() => []),
  ]);
  const ok = (r) => r.status === "succeeded";
  state.trafficRuns = [...own, ...all].filter(ok);
  const label = (r) => `${r.id} · ${r.branch} v${r.version} · ${(r.summary?.hours ?? []).map((h) => `${h}h`).join(" ")}`;
  $("traffic-run").replaceChildren(new Option("— none —", ""), ...own.filter(ok).map((r) => new Option(label(r), r.id)));
  $("traffic-base").replaceChildren(new Option("— none —", ""), ...all.filter(ok).map((r) => new Option(label(r), r.id)));
  for (const [sel, key] of [[$("traffic-run"), "trafficRun"], [$("traffic-base"), "trafficBase"]]) {
    if (state[key] && ![...sel.options].some((o) => o.value === state[key])) sel.append(new Option(state[key], state[key]));
    sel.value = state[key];
  }
  await setTraffic(state.trafficRun, state.trafficBase, state.trafficHour);
}

let trafficRequest = 0;
async function setTraffic(run, base, hour) {
  // show a run's roads (against a base run) at an hour of its summary.hours (its first when not one of them)
  state.trafficRun = run || "";
  state.trafficBase = base || "";
  const ask = ++trafficRequest;
  $("traffic-run").value = state.trafficRun;
  $("traffic-base").value = state.trafficBase;
  if (!state.trafficRun) {
    clearTraffic();
    syncUrl();
    return;
  }
  $("traffic-info").textContent = "loading…";
  try {
    const runs = state.trafficRuns ?? [];
    const rec = await runRecord(state.trafficRun, runs);
    const baseRec = state.trafficBase ? await runRecord(state.trafficBase, runs) : null;
    const [rows, baseRows, roads, baseRoads] = await Promise.all([
      trafficTable(rec.id), baseRec ? trafficTable(baseRec.id) : null,
      roadsAt(rec.branch, rec.version), baseRec ? roadsAt(baseRec.branch, baseRec.version) : null,
    ]);
    if (ask !== trafficRequest) return;
    const all = new Map(roads);
    for (const [id, r] of baseRoads ?? []) if (!all.has(id)) all.set(id, { ...r, gone: true }); // removed by the run's edits
    let hours = (rec.summary?.hours ?? []).map(Number).filter((h) => rows.has(h));
    if (!hours.length) hours = [...rows.keys()].sort((a, b) => a - b);
    const h = hours.includes(Number(hour)) && hour !== null && hour !== "" ? Number(hour) : hours[0] ?? null;
    state.trafficHour = h;
    clearTraffic(true); // the road panel stays: it shows the new run's row
    state.traffic = { run: rec, base: baseRec, rows, baseRows, roads: all, hours, primitives: [], drawn: [] };
    const hs = $("traffic-hour");
    hs.replaceChildren(...hours.map((x) => new Option(`${String(x).padStart(2, "0")}:00–${String(x + 1).padStart(2, "0")}:00`, String(x))));
    hs.value = String(h);
    $("traffic-hour-label").hidden = false;
    await drawTraffic();
  } catch (e) {
    if (ask === trafficRequest) $("traffic-info").textContent = "";
    showError(`traffic run: ${e.message}`);
  }
  syncUrl();
}

function setTrafficHour(hour) {
  if (!state.traffic) return Promise.resolve();
  state.trafficHour = Number(hour);
  $("traffic-hour").value = String(state.trafficHour);
  syncUrl();
  return drawTraffic();
}

function roadResult(id) {
  // the road's rows at the shown hour (run and base), its colour class and the change of volume
  const T = state.traffic;
  const road = T.roads.get(id);
  const row = T.rows.get(state.trafficHour)?.get(id) ?? null;
  const base = T.base ? T.baseRows?.get(state.trafficHour)?.get(id) ?? null : null;
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const diff = T.base && (row || base) ? (num(row?.volume) ?? 0) - (num(base?.volume) ?? 0) : null;
  let cls;
  if (road?.closed || road?.gone || (T.base && base && !row)) cls = "closed"; // closed, or out of the run's network
  else if (!row) cls = "none";
  else if (T.base) cls = DIFF_CLASSES[binOf(diff, DIFF_EDGES)][0];
  else cls = num(row.vc) === null ? "none" : VC_CLASSES[binOf(row.vc, VC_EDGES)][0];
  return { road, row, base, diff, cls };
}

function clearTraffic(keepPanel = false) {
  for (const p of state.traffic?.primitives ?? []) scene.groundPrimitives.remove(p); // destroys it
  state.traffic = null;
  $("traffic-legend").hidden = true;
  $("traffic-hour-label").hidden = true;
  $("traffic-info").textContent = "";
  if (state.selectedRoad && !keepPanel) clearSelection();
  scene.requestRender();
}

async function drawTraffic() {
  const T = state.traffic;
  if (!T) return;
  await Cesium.GroundPolylinePrimitive.initializeTerrainHeights(); // once; then the primitives build synchronously
  if (state.traffic !== T) return;
  if (!Cesium.GroundPolylinePrimitive.isSupported(scene)) {
    showError("traffic: this browser cannot drape polylines on the ground (no WebGL depth textures)");
    return;
  }
  for (const p of T.primitives) scene.groundPrimitives.remove(p);
  const results = [...T.roads.keys()].map((id) => [id, roadResult(id)]);
  const vol = (r) => Math.max(r.row?.volume ?? 0, r.base?.volume ?? 0);
  const vmax = Math.max(1, ...results.map(([, r]) => vol(r)));
  const plain = [];
  const dashed = [];
  T.drawn = [];
  for (const [id, r] of results) {
    const width = r.cls === "none" ? ROAD_WIDTH.none : r.cls === "closed" ? ROAD_WIDTH.closed
      : ROAD_WIDTH.min + (ROAD_WIDTH.max - ROAD_WIDTH.min) * Math.sqrt(vol(r) / vmax);
    const pickId = { twinRoad: id };
    let parts = 0;
    for (const line of r.road.lines) {
      const pts = line.filter((p, i) => i === 0 || p[0] !== line[i - 1][0] || p[1] !== line[i - 1][1]);
      if (pts.length < 2) continue;
      const instance = new Cesium.GeometryInstance({
        geometry: new Cesium.GroundPolylineGeometry({ positions: Cesium.Cartesian3.fromDegreesArray(pts.flat()), width }),
        attributes: { color: Cesium.ColorGeometryInstanceAttribute.fromColor(Cesium.Color.fromCssColorString(ROAD_COLOURS[r.cls])) },
        id: pickId,
      });
      (r.cls === "closed" ? dashed : plain).push(instance);
      parts += 1;
    }
    if (parts) {
      T.drawn.push({ id, cls: r.cls, width: Math.round(width * 10) / 10, volume: r.row?.volume ?? null,
                     vc: r.row?.vc ?? null, volume_diff: r.diff });
    }
  }
  T.primitives = [];
  if (plain.length) {
    T.primitives.push(new Cesium.GroundPolylinePrimitive({
      geometryInstances: plain, appearance: new Cesium.PolylineColorAppearance(), asynchronous: false,
    }));
  }
  if (dashed.length) {
    T.primitives.push(new Cesium.GroundPolylinePrimitive({
      geometryInstances: dashed, asynchronous: false,
      appearance: new Cesium.PolylineMaterialAppearance({
        material: Cesium.Material.fromType("PolylineDash", {
          color: Cesium.Color.fromCssColorString(ROAD_CLOSED[1]), gapColor: Cesium.Color.WHITE, dashLength: 12,
        }),
      }),
    }));
  }
  for (const p of T.primitives) scene.groundPrimitives.add(p);
  trafficLegend(T, vmax);
  if (state.selectedRoad && T.roads.has(state.selectedRoad)) showRoad(state.selectedRoad);
  else if (state.selectedRoad) clearSelection();
  scene.requestRender();
}

function trafficLegend(T, vmax) {
  const classes = T.base ? DIFF_CLASSES : VC_CLASSES;
  const ul = $("traffic-legend");
  ul.replaceChildren(
    ...[...classes, ROAD_CLOSED, ROAD_NONE].map(([k, c, label]) => {
      const li = document.createElement("li");
      li.dataset.cls = k;
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = k === "closed" ? `repeating-linear-gradient(90deg, ${c} 0 4px, #fff 4px 7px)` : c; // dashed
      li.append(sw, document.createTextNode(label));
      return li;
    }),
  );
  ul.hidden = false;
  const counts = {};
  for (const d of T.drawn) counts[d.cls] = (counts[d.cls] ?? 0) + 1;
  const h = state.trafficHour;
  $("traffic-info").textContent = `${T.drawn.length} roads at ${String(h).padStart(2, "0")}:00` +
    (T.base ? `, volume of ${T.run.id} − ${T.base.id}` : `, v/c of ${T.run.id}`) +
    `; width by volume (widest ${cell(Math.round(vmax))} veh/h)`;
  $("traffic-info").title = Object.entries(counts).map(([k, n]) => `${k}: ${n}`).join(", ");
}

function pickedRoadId(position) {
  const picked = scene.pick(position);
  const id = picked?.id?.twinRoad;
  return id !== undefined && state.traffic?.roads.has(id) ? id : null;
}

function showRoad(id) {
  // the road's traffic at the shown hour in the side panel (the building panel's place)
  const T = state.traffic;
  if (!T?.roads.has(id)) return;
  if (state.selected) clearSelection();
  state.selectedRoad = id;
  const { road, row, base, diff, cls } = roadResult(id);
  $("details").hidden = false;
  $("building-name").textContent = road.name ?? "unnamed road";
  $("building-place").textContent = [road.road_class, road.lanes ? `${road.lanes} lanes` : null, road.closed ? "closed" : null]
    .filter((x) => x).join(" · ");
  $("building-id").textContent = id;
  const veh = (v) => (v === null || v === undefined ? null : `${cell(Math.round(v))} veh/h`);
  const sec = (v) => (v === null || v === undefined ? null : `${cell(Math.round(v * 10) / 10)} s`);
  const signed = (v, f) => (v === null || v === undefined ? null : `${v > 0 ? "+" : v < 0 ? "−" : "±"}${f(Math.abs(v))}`);
  const h = state.trafficHour;
  const rows = [
    ["class", (T.base ? DIFF_CLASSES : VC_CLASSES).concat([ROAD_CLOSED, ROAD_NONE]).find(([k]) => k === cls)?.[2] ?? cls, "", "class"],
    ["volume", veh(row?.volume), "", "volume"],
    ["A → B / B → A", row ? `${cell(Math.round(row.volume_ab ?? 0))} / ${cell(Math.round(row.volume_ba ?? 0))} veh/h` : null, "", "volume_ab"],
    ["capacity", veh(row?.capacity), "", "capacity"],
    ["v/c", row?.vc, row && row.vc > 1 ? "bad" : "", "vc"],
    ["travel time", row ? `${sec(row.time_s)} (free flow ${sec(row.free_time_s)})` : null, "", "time_s"],
    ["delay", sec(row?.delay_s), "", "delay_s"],
    ["speed", row?.speed_kmh != null ? `${cell(Math.round(row.speed_kmh * 10) / 10)} km/h` : null, "", "speed_kmh"],
  ];
  if (T.base) {
    rows.push(
      ["base volume", veh(base?.volume) ?? "no result", "", "base.volume"],
      ["volume change", signed(diff, veh), diff > 0 ? "bad" : diff < 0 ? "good" : "", "volume_diff"],
      ["travel time change", row && base ? signed((row.time_s ?? 0) - (base.time_s ?? 0), sec) : null, "", "time_s_diff"],
      ["base v/c", base?.vc, "", "base.vc"],
    );
  }
  const parts = [heading(`traffic ${String(h).padStart(2, "0")}:00 (${T.run.id}${T.base ? ` vs ${T.base.id}` : ""})`),
    table(rows.filter(([, v]) => v !== undefined && v !== null))];
  if (!row) parts.push(document.createTextNode(road.closed ? "closed: no traffic in this run" : "no result in this run"));
  const link = document.createElement("p");
  const a = document.createElement("a");
  a.href = `/runs/${encodeURIComponent(T.run.id)}/tables/traffic_roads?entity_id=${encodeURIComponent(id)}`;
  a.textContent = "every hour (JSON)";
  a.target = "_blank";
  link.append(a);
  parts.push(link);
  $("building-body").replaceChildren(...parts);
}

function roadScreenPosition(id) {
  // a canvas pixel where a pick returns the road (the middle of its longest segment, tried at the terrain's heights)
  const road = state.traffic?.roads.get(id);
  if (!road) return null;
  let best = null;
  for (const line of road.lines) {
    for (let i = 1; i < line.length; i++) {
      const d = Math.hypot(line[i][0] - line[i - 1][0], line[i][1] - line[i - 1][1]);
      if (!best || d > best.d) best = { d, a: line[i - 1], b: line[i] };
    }
  }
  if (!best) return null;
  // the terrain's height there (the buildings and the point cloud left out), else the heights of its tileset
  const region = state.tilesets.terrain?.root?.boundingVolume;
  const lo = Number.isFinite(region?.minimumHeight) ? region.minimumHeight : 0;
  const hi = Number.isFinite(region?.maximumHeight) ? region.maximumHeight : lo + 100;
  const skip = [state.tilesets.buildings, state.tilesets.pointcloud].filter((x) => x);
  for (const t of [0.5, 0.3, 0.7]) {
    const lon = best.a[0] + t * (best.b[0] - best.a[0]);
    const lat = best.a[1] + t * (best.b[1] - best.a[1]);
    const h = scene.sampleHeightSupported ? scene.sampleHeight(Cesium.Cartographic.fromDegrees(lon, lat), skip) : undefined;
    for (const z of h !== undefined ? [h] : [0.5, 0, 1, 0.25, 0.75].map((f) => lo + f * (hi - lo))) {
      const win = Cesium.SceneTransforms.worldToWindowCoordinates(scene, Cesium.Cartesian3.fromDegrees(lon, lat, z));
      if (win && pickedRoadId(win) === id) return { x: win.x, y: win.y };
    }
  }
  return null;
}

// ---------------------------------------------------------------- branch / version switcher

async function loadBranches() {
  try {
    const branches = await getJSON("/branches");
    const sel = $("branch");
    sel.replaceChildren(...branches.map((b) => new Option(b.name, b.name)));
    if (!branches.some((b) => b.name === state.branch)) {
      if (branches.length) showError(`branch ${state.branch} does not exist; showing ${branches[0].name}`);
      state.branch = branches[0]?.name ?? "main";
    }
    sel.value = state.branch;
  } catch (e) {
    showError(`branches: ${e.message}`);
  }
}

async function loadVersions() {
  const sel = $("version");
  try {
    const commits = await getJSON(`/commits?branch=${encodeURIComponent(state.branch)}`);
    sel.replaceChildren(new Option("latest", "latest"));
    for (const c of commits) {
      const when = String(c.time).slice(0, 16).replace("T", " ");
      sel.append(new Option(`v${c.version} ${when} — ${c.message}`.slice(0, 70), String(c.version)));
    }
    if (![...sel.options].some((o) => o.value === state.version)) {
      // an unknown version (an old link, a typo) is shown as asked, so its missing tiles are reported, not hidden
      sel.append(new Option(`v${state.version} (not on ${state.branch})`, state.version));
      showError(`version ${state.version} is not on branch ${state.branch}`);
    }
    sel.value = state.version;
  } catch (e) {
    showError(`commits: ${e.message}`);
  }
}

async function switchTo(branch, version) {
  state.switching += 1;
  try {
    state.branch = branch;
    state.version = version;
    await loadBranches(); // branches made since the page loaded appear too
    await loadVersions();
    syncUrl();
    const layerName = state.layer?.spec.name ?? "";
    const res = state.layer?.res;
    await loadTilesets();
    await loadRuns();
    await loadTrafficRuns();
    await loadLayerList();
    if (layerName) await loadLayer($("layer").value === layerName ? layerName : "", res);
    setStatus(statusText());
  } finally {
    state.switching -= 1;
  }
}

function statusText() {
  const n = Object.keys(state.tilesets).length;
  return `${state.branch} @ ${state.version}: ${n}/${KINDS.length} tilesets`;
}

// ---------------------------------------------------------------- controls

for (const kind of KINDS) {
  $(`show-${kind}`).addEventListener("change", (e) => {
    const ts = state.tilesets[kind];
    if (ts) ts.show = e.target.checked;
    scene.requestRender();
  });
}
$("color-by").addEventListener("change", (e) => {
  state.colorBy = e.target.value;
  applyBuildingStyle();
  syncUrl();
});
$("branch").addEventListener("change", (e) => switchTo(e.target.value, "latest"));
$("run").addEventListener("change", (e) => setRun(e.target.value, state.runBase));
$("run-base").addEventListener("change", (e) => setRun(state.run, e.target.value));
$("traffic-run").addEventListener("change", (e) => setTraffic(e.target.value, state.trafficBase, state.trafficHour));
$("traffic-base").addEventListener("change", (e) => setTraffic(state.trafficRun, e.target.value, state.trafficHour));
$("traffic-hour").addEventListener("change", (e) => setTrafficHour(Number(e.target.value)));
$("version").addEventListener("change", (e) => switchTo(state.branch, e.target.value));
$("layer").addEventListener("change", (e) => loadLayer(e.target.value));
$("layer-res").addEventListener("change", (e) => loadLayer(state.layer?.spec.name ?? $("layer").value, Number(e.target.value)));
$("time").addEventListener("input", (e) => setBucket(Number(e.target.value)));
$("layer-per-step").checked = state.layerScale === "step";
$("layer-per-step").addEventListener("change", (e) => setLayerScale(e.target.checked ? "step" : "all"));

function setLayerScale(mode) {
  state.layerScale = mode === "step" ? "step" : "all";
  $("layer-per-step").checked = state.layerScale === "step";
  syncUrl();
  colourLayer();
}
$("play").addEventListener("click", togglePlay);
$("sign-in-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("api-key").value.trim();
  $("api-key").value = "";
  if (key) signIn(key).catch((err) => showError(`sign-in: ${err.message}`));
});
$("sign-out").addEventListener("click", signOut);

if (TEST || state.colorBy === "marker") $("color-by").append(new Option("test colour (marker)", "marker"));
$("color-by").value = state.colorBy;
// the point cloud hides the buildings under its roof points: off unless asked for (on in test mode, which checks it)
$("show-pointcloud").checked = params.has("pointcloud") ? params.get("pointcloud") !== "0" : TEST;

// ---------------------------------------------------------------- start

async function screenPositionOf(id) {
  // the building's footprint centre from the features API, at heights between the ground and its roof; the first
  // window position where a pick returns this id (null when it is off screen or hidden behind something)
  const rec = await getJSON(`/collections/buildings/items/${encodeURIComponent(id)}?${query()}`);
  const g = rec.geometry;
  const ring = g.type === "Polygon" ? g.coordinates[0] : g.type === "MultiPolygon" ? g.coordinates[0][0] : null;
  if (!ring) return null;
  const pts = ring.slice(0, -1);
  const lon = pts.reduce((s, p) => s + p[0], 0) / pts.length;
  const lat = pts.reduce((s, p) => s + p[1], 0) / pts.length;
  const ts = state.tilesets.buildings;
  const region = ts?.root?.boundingVolume;
  const ground = Number.isFinite(region?.minimumHeight) ? region.minimumHeight : 0;
  const h = Number(rec.properties?.height) || 10;
  for (const f of [1, 0.6, 0.3, 0.9, 0]) {
    const win = Cesium.SceneTransforms.worldToWindowCoordinates(scene, Cesium.Cartesian3.fromDegrees(lon, lat, ground + f * h));
    if (!win) continue;
    const hit = pickedBuildingId(win);
    if (hit?.id === id) return { x: win.x, y: win.y };
  }
  return null;
}

function loadedBuildings(limit = 1000) {
  // the building features in the tiles currently loaded, by id, with the properties the colours use (for tests and
  // debugging)
  const out = new Map();
  const ts = state.tilesets.buildings;
  if (!ts) return [];
  const visit = (tile) => {
    const c = tile.content;
    if (c?.featuresLength) {
      for (let i = 0; i < c.featuresLength && out.size < limit; i++) {
        const f = c.getFeature(i);
        const v = f.getProperty("id");
        if (v === undefined || v === null || out.has(String(v))) continue;
        const props = { id: String(v) };
        for (const k of ["height", "roof_type", "rmse", "valid"]) props[k] = f.getProperty(k) ?? null;
        out.set(String(v), props);
      }
    }
    for (const ch of tile.children) visit(ch);
  };
  visit(ts.root);
  return [...out.values()];
}

function loadedBuildingIds(limit = 1000) {
  // ids of building features in the tiles currently loaded
  return loadedBuildings(limit).map((b) => b.id);
}

let resolveReady;
// Test hooks (docs/viewer.md): harmless in normal use, they only read state or do what a click would do.
window.twin = {
  ready: new Promise((r) => (resolveReady = r)),
  viewer,
  test: TEST,
  state,
  errors: state.errors,
  tilesLoaded() {
    scene.requestRender();
    // a few frames after setup (the globe queues its imagery on the first ones), then everything loaded
    const sets = Object.values(state.tilesets).filter((ts) => ts.show);
    return state.frames >= 3 && scene.globe.tilesLoaded && sets.every((ts) => ts.twinLoaded && ts.tilesLoaded);
  },
  tilesets() {
    return Object.fromEntries(
      KINDS.map((k) => [k, state.tilesets[k] ? { show: state.tilesets[k].show, loaded: state.tilesets[k].tilesLoaded } : { error: state.tilesetErrors[k] ?? "not loaded" }]),
    );
  },
  pickAt(x, y) {
    return pickedBuildingId(new Cesium.Cartesian2(x, y))?.id ?? null;
  },
  screenPositionOf,
  loadedBuildingIds,
  loadedBuildings,
  selected() {
    return state.selected ? { id: state.selected.id, loaded: !!state.selected.record, loading: !!state.selected.loading } : null;
  },
  layer() {
    const L = state.layer;
    if (!L) return null;
    return {
      name: L.spec.name, res: L.res, buckets: L.buckets.length, index: L.index, t: L.buckets[L.index] ?? null,
      cells: L.cells.length, shown: (L.values.get(L.buckets[L.index]) ?? new Map()).size,
      ready: L.applied === L.index, min: L.lo, max: L.hi, scale: state.layerScale,
      label: $("time-label").textContent, zone: cityZone().note,
    };
  },
  setLayer: (name, res) => { $("layer").value = name; return loadLayer(name, res); },
  setBucket,
  setLayerScale,
  localTime,
  setRun,
  sunlightClass: (id) => sunClass(String(id)),
  setTraffic,
  setTrafficHour,
  traffic() {
    const T = state.traffic;
    if (!T) return null;
    scene.requestRender();
    return {
      run: T.run.id, base: T.base?.id ?? null, hour: state.trafficHour, hours: T.hours, mode: T.base ? "change" : "vc",
      roads: T.drawn.length, ready: T.primitives.length > 0 && T.primitives.every((p) => p.ready),
      legend: [...$("traffic-legend").children].map((li) => li.dataset.cls),
    };
  },
  trafficRoads: () => (state.traffic?.drawn ?? []).map((d) => ({ ...d })),
  roadScreenPosition,
  roadAt: (x, y) => pickedRoadId(new Cesium.Cartesian2(x, y)),
  selectRoad: (id) => showRoad(String(id)),
  selectedRoad: () => state.selectedRoad,
  setColorBy(by) {
    state.colorBy = by;
    $("color-by").value = by;
    applyBuildingStyle();
  },
  switchTo,
  switching: () => state.switching > 0,
  flyToCity: () => flyToCity(0),
  render() {
    scene.render();
  },
};

async function start() {
  await showPrincipal();
  await loadBranches();
  await loadVersions();
  syncUrl();
  const imagery = loadImagery();
  const zone = loadZone();
  await loadTilesets();
  await imagery;
  await zone;
  await loadRuns();
  await loadTrafficRuns();
  applyBuildingStyle();
  flyToCity(TEST ? 0 : 2);
  const layerName = await loadLayerList();
  if (layerName) await loadLayer(layerName, params.get("res") ? Number(params.get("res")) : undefined);
  setStatus(statusText());
  state.frames = 0;
  scene.postRender.addEventListener(() => (state.frames += 1));
  resolveReady();
}

start().catch((e) => {
  showError(`viewer: ${e.message}`);
  resolveReady();
});
