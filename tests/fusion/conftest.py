"""Fixtures of the remote-sensing fusion tests, on the session's small demo city."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def rs_city(city):
    """The shared small demo city with its source and truth folders named."""
    out = city["dir"]
    return {"dir": out, "manifest": city["manifest"], "seed": city["seed"], "sources": out / "sources",
            "truth": out / "truth"}
