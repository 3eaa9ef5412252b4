"""A 30-second soak of the loop at the soak's defaults (fused mode, 1 kHz): fails on memory growth or a violation.

No rate is asserted: the achieved rate depends on the machine (it is reported, see docs/reliability.md).
"""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

from residual_control.cli import main
from residual_control.harness.soak import check_batch, memory_growth

pytestmark = pytest.mark.graph


def test_memory_growth_compares_last_to_first_third_after_warmup():
    t = np.arange(30.0)
    flat = memory_growth(t, np.full(30, 80.0) + np.r_[np.linspace(0, 50, 5), np.zeros(25)], warmup=5.0)
    assert flat["growth_mib"] == 0.0  # the warm-up is excluded
    leak = memory_growth(t, 80.0 + 0.5 * t, warmup=5.0)
    assert leak["growth_mib"] > 5.0 and leak["growth_pct"] > 5.0


def test_check_batch_finds_every_kind_of_violation():
    cfg = types.SimpleNamespace(joints=("j1", "j2"), command_min=np.array([-10.0, -10.0]),
                                command_max=np.array([10.0, 10.0]), residual_gain=1.0,
                                residual_limit=np.array([1.0, 1.0]))
    ok_cmd, ok_app = np.array([[1.0, -2.0], [10.0, -10.0]]), np.array([[0.5, -1.0]])
    counts, examples = check_batch(ok_cmd, ok_app, cfg)
    assert sum(counts.values()) == 0 and not examples
    counts, examples = check_batch(np.array([[np.nan, 0.0], [10.5, 0.0], [0.0, 0.0]]),
                                   np.array([[1.2, 0.0], [0.0, np.inf], [0.1, 0.1]]), cfg)
    assert counts == {"non_finite": 1, "out_of_limits": 1, "applied_beyond_bound": 2}
    assert {e["kind"] for e in examples} == set(counts)
    counts, _ = check_batch(np.array([[0.0, 0.0, 0.0]]), np.zeros((0, 0)), cfg)  # wrong width
    assert counts["non_finite"] == 1


def test_30_second_soak_passes(tmp_path):
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    code = main(["soak", "--minutes", "0.5", "--json", str(out), "--plot", str(png)])
    doc = json.loads(out.read_text())
    assert doc["mode"] == "fused"
    assert doc["violations"] == 0, doc["violation_breakdown"]
    assert doc["commands"] > 0 and doc["checked"]["commands"] > 0
    assert not doc["failures"], doc["failures"]
    for name, node in doc["nodes"].items():
        assert node["rss"]["growth_mib"] <= doc["memory_limits"]["growth_mib"], (name, node["rss"])
        assert node["cpu_share_mean"] is not None
    assert png.stat().st_size > 0
    assert code == 0


def test_soak_recorder_measures_the_applied_residual_step_at_a_fallback():
    import types as _t

    from residual_control.harness.soak import Recorder, transition_summary

    cfg = _t.SimpleNamespace(joints=("j1", "j2"), residual_gain=1.0, residual_limit=np.array([4.0, 2.0]),
                             fallback_ramp_time=0.0)
    rec = _t.SimpleNamespace(joints=["j1", "j2"], config=cfg, period=0.001, _recent=[], _transitions_done=0,
                             modes=[(99.0, "nominal"), (100.0, "fallback")],
                             transition_steps=transition_summary([], ["j1", "j2"], cfg))
    t = 99.5 + 0.001 * np.arange(2000)
    applied = np.where(t[:, None] < 100.0 - 1e-9, [[3.0, -1.0]], [[0.0, 0.0]])
    Recorder._transitions(rec, t[:1000], applied[:1000])
    assert rec.transition_steps["fallback_transitions"] == 0  # its window has not been received yet
    Recorder._transitions(rec, t[1000:], applied[1000:])
    s = rec.transition_steps
    assert s["fallback_transitions"] == 1
    assert np.isclose(s["fallback_applied_residual"]["j1"], 3.0)
    assert np.isclose(s["fallback_applied_residual"]["j2"], 1.0)
