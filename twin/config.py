"""Settings for twin, read once from the environment (``TWIN_*``) so every entry point agrees."""

from __future__ import annotations

import getpass
from pathlib import Path

from pydantic import Field
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
                                   "https://twin.example.org/api); unset: http://<host>:<port> of `twin serve`, "
                                   "never the request's Host header")
    trusted_proxies: str = Field(default="", description="comma-separated proxy addresses whose X-Forwarded-* "
                                 "headers are believed (empty: none)")
    cors_origins: str = Field(default="", description="comma-separated origins allowed to call the API from a "
                              "browser ('*': any, for the read-only GET routes); empty: no CORS headers")
    access_log: bool = Field(default=False, description="write one structured line per request (method, path, "
                             "status, duration, bytes) to stderr")
    cache_dir: Path | None = Field(default=None, description="where the server may write tilesets it builds and "
                                   "compressed copies (default <store>/tiles); reads work without it on a "
                                   "read-only store")


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; not cached so tests can change env)."""
    return Settings()
