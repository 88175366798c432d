"""Fixtures of the remote-sensing fusion tests: the small demo city, generated once per session."""

from __future__ import annotations

import os

import pytest

from twin.demo import generate


@pytest.fixture(scope="session")
def rs_city(tmp_path_factory):
    """The small demo city (seed 7; TWIN_DEMO_TEST_SEED overrides) with its source and truth folders."""
    seed = int(os.environ.get("TWIN_DEMO_TEST_SEED", "7"))
    out = tmp_path_factory.mktemp("rs_city")
    manifest = generate(out, size="small", seed=seed)
    return {"dir": out, "manifest": manifest, "seed": seed, "sources": out / "sources", "truth": out / "truth"}
