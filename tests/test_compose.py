"""compose.yaml and the Dockerfile: valid, and the services' own commands start on a fresh volume (run here as the
container would run them, since this machine has no Docker daemon; `docker compose config` checks the file where
the compose plugin exists, else the Compose Specification's JSON Schema does)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import yaml

from tests.api.server import free_port, wait_for_port
from tests.conftest import ROOT, TWIN

COMPOSE = ROOT / "compose.yaml"


def _has_compose_plugin() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0


def test_compose_file_is_valid() -> None:
    if _has_compose_plugin():
        r = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                           text=True)
    else:
        checker = Path(TWIN).with_name("check-jsonschema")
        r = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                           capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_copies_what_exists_and_ships_the_browser_files() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
        for part in src.split():
            assert (ROOT / part).exists(), f"Dockerfile copies {part}, which is not in the repository"
    assert re.search(r"npm ci --omit=dev", text) and "COPY --from=web /web/node_modules ./node_modules" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "node_modules", ".git"} <= set(ignored)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_compose_services_start_on_a_fresh_volume(tmp_path: Path) -> None:
    """init (then api) as compose runs them: the store appears on the empty volume, the API answers, and the
    viewer and the API docs are served (not the 503 of missing browser files)."""
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert services["api"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["demo"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    volume = tmp_path / "data"
    volume.mkdir()

    def env_of(name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env.update({k: v.replace("/data", str(volume), 1) for k, v in services[name]["environment"].items()})
        return env

    r = subprocess.run([TWIN, *services["init"]["command"][1:]], env=env_of("init"), cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (volume / "twin-store" / "STORE.json").is_file()
    command = services["api"]["command"]
    port = free_port()
    i = command.index("--port")
    command = [*command[1:i + 1], str(port), *command[i + 2:]]
    err = tmp_path / "api.stderr"
    with err.open("w") as f:
        proc = subprocess.Popen([TWIN, *command], env=env_of("api") | {"TWIN_CACHE_DIR": str(tmp_path / "cache")},
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
    try:
        wait_for_port(port, proc, err)
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/health")[0] == 200
        status, body = _get(f"{base}/viewer/")
        assert status == 200 and b"cesium" in body.lower()
        assert _get(f"{base}/docs")[0] == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
