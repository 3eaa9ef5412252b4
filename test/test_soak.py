"""A 30-second soak of the loop at the soak's default rate: fails on memory growth or a safety violation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from residual_control.cli import main
from residual_control.tools.soak import memory_growth

pytestmark = pytest.mark.graph


def test_memory_growth_compares_last_to_first_third_after_warmup():
    t = np.arange(30.0)
    flat = memory_growth(t, np.full(30, 80.0) + np.r_[np.linspace(0, 50, 5), np.zeros(25)], warmup=5.0)
    assert flat["growth_mib"] == 0.0  # the warm-up is excluded
    leak = memory_growth(t, 80.0 + 0.5 * t, warmup=5.0)
    assert leak["growth_mib"] > 5.0 and leak["growth_pct"] > 5.0


def test_30_second_soak_passes(tmp_path):
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    code = main(["soak", "--minutes", "0.5", "--json", str(out), "--plot", str(png)])
    doc = json.loads(out.read_text())
    assert doc["violations"] == 0, doc["violation_breakdown"]
    assert doc["commands"] > 0
    assert not doc["failures"], doc["failures"]
    for name, node in doc["nodes"].items():
        assert node["rss"]["growth_mib"] <= doc["memory_limits"]["growth_mib"], (name, node["rss"])
        assert node["cpu_share_mean"] is not None
    assert png.stat().st_size > 0
    assert code == 0
