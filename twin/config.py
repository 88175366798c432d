"""Settings for twin, read once from the environment (``TWIN_*``) so every entry point agrees."""

from __future__ import annotations

import getpass
import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "twin"


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as ``TWIN_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    store: Path = Field(default=Path("twin-store"), description="store directory")
    host: str = "127.0.0.1"
    port: int = 8000
    author: str = Field(default_factory=_default_author, description="author recorded on commits")
    crs: str = Field(default="EPSG:4548", description="CRS of new stores (CGCS2000 / 3-degree GK CM 117E)")
    demo_dir: Path = Field(default=Path("demo-city"), description="where `twin demo` writes the sample city")
    workers: int | None = Field(default=None, ge=1, description="worker processes where a stage is not told "
                                                                 "(default: the machine's cores)")
    executor: str = Field(default="local", description="where parallel work runs: local (processes) | inprocess")
    public_url: str | None = Field(default=None, description="the server's public base URL for links (e.g. "
                                   "https://twin.example.org/api; a path is a prefix the proxy strips); unset: "
                                   "http://<host>:<port> of `twin serve`, never the request's Host header")
    trusted_proxies: str = Field(default="", description="comma-separated proxy addresses or networks (CIDR; '*': "
                                 "any) whose X-Forwarded-For/-Proto/-Host/-Prefix headers are believed (empty: none)")
    cors_origins: str = Field(default="", description="comma-separated origins allowed to call the API from a "
                              "browser ('*': any; the API is read-only); empty: no CORS headers")
    access_log: bool = Field(default=False, description="write one JSON line per request (time, method, path, "
                             "status, duration, bytes, client) to stderr")
    jobs_max: int = Field(default=2, ge=1, description="OGC API Processes jobs run at once per store (each in its "
                          "own worker process); more wait as accepted and start as running ones finish")
    auth: bool = Field(default=True, description="authenticate API requests (API keys, tokens; no credentials: "
                       "public data only); 0 makes every caller the local admin, refused beyond a loopback address")
    api_key: SecretStr | None = Field(default=None, description="an API key: the CLI's exports then read only what "
                                      "its principal may see (default: the local admin, who reads the store's files)")
    secrets_dir: Path | None = Field(default=None, description="where this machine keeps the server's keys, never "
                                     "inside a store (the token signing secret, the audit signing key), one file "
                                     "per store; default $XDG_CONFIG_HOME/twin or ~/.config/twin")
    cache_dir: Path | None = Field(default=None, description="where `twin serve` builds the tilesets missing "
                                   "from <store>/tiles/ and keeps compressed copies, in a folder per store (never "
                                   "inside the store); default $XDG_CACHE_HOME/twin/tiles or ~/.cache/twin/tiles; "
                                   "'off': no on-demand builds (a missing tileset is a 503). Reads of what the "
                                   "store's writers built (twin build, twin tiles build) need no writable folder")
    study_dir: Path | None = Field(default=None, description="the folder whose files callers over HTTP may name in "
                                   "a simulator's file inputs (flood: dem, buildings, roughness, inflow, points, "
                                   "drainage), relative to it; unset: jobs take no file inputs")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        """An absolute http(s) URL without query or fragment, kept without its trailing slash."""
        if v is None or not v.strip():
            return None
        v = v.strip().rstrip("/")
        scheme, _, rest = v.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/") or any(c in v for c in "?#"):
            raise ValueError(f"TWIN_PUBLIC_URL must be an http(s) URL like https://twin.example.org/api, got {v!r}")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, v: str) -> str:
        """Each entry an IP address, a network in CIDR notation, or ``*``."""
        for entry in _csv(v):
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"TWIN_TRUSTED_PROXIES: {entry!r} is not an IP address, a network (CIDR) "
                                     "or '*'") from None
        return v

    @property
    def trusted_proxy_list(self) -> list[str]:
        return _csv(self.trusted_proxies)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.rstrip("/") for o in _csv(self.cors_origins)]


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; not cached so tests can change env)."""
    return Settings()
