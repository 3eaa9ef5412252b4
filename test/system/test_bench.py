"""The benchmark runs and writes its JSON; the fused residual_controller behaves like the three-node graph.

No timing assertions here: the numbers depend on the machine (see
docs/performance.md). The fused node is driven the way test_graph_runtime
drives the separate nodes (support/graph_drive.py: same probe, same synthetic model, same formula).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rclpy
import yaml

from residual_control.core.observation import default_observation_names
from residual_control.nodes.residual_controller import FUSED_PARAMS, NODE_NAME, fused_parameters
from residual_control.harness.graph import Graph, NodeSpec
from residual_control.harness.probe import Probe
from residual_control.harness.synthetic_models import linear_model

from support.graph_drive import (BIAS, JOINTS, RATE_HZ, assert_commands_safe, expected_command, load_params,
                                 reach_nominal)

BENCH_KEYS = ("mixer_step", "inference", "hop", "graph", "resources", "fused", "executors", "machine")


def _numbers(obj):
    """Every int/float leaf of a JSON value."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


@pytest.mark.graph
def test_bench_quick_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "residual_control.cli", "bench", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for key in BENCH_KEYS:
        assert key in res, f"missing {key}"
        assert isinstance(res[key], dict) and res[key], key
    for n in (2, 7, 12):
        step = res["mixer_step"][f"{n}_joints"]["step"]
        assert all(isinstance(step[k], float) for k in ("p50", "p99", "max"))
    assert res["inference"]["models"], "no model benchmarked"
    for entry in res["inference"]["models"].values():
        assert isinstance(entry["policy_runner_infer"]["p50"], float)
    for section, case in (("hop", "residual_mixer"), ("hop", "bare_relay"), ("graph", "three_nodes"),
                          ("graph", "relay_chain"), ("fused", "residual_controller"), ("fused", "bare_single_hop"),
                          ("hop", "bare_relay_wait_set"), ("graph", "relay_chain_wait_set"),
                          ("fused", "bare_single_hop_wait_set")):
        runs = res[section][case]
        assert runs, (section, case)
        for r in runs.values():
            assert "latency" in r, (section, case, r.get("error"), r.get("logs"))
            assert isinstance(r["latency"]["p50"], float) and isinstance(r["lost_or_late_share"], float)
    assert res["resources"]["three_nodes"], "no resource numbers"
    for proc_res in res["resources"]["three_nodes"].values():
        assert isinstance(proc_res["cpu_share"], float) and proc_res["rss_mib"] > 0
    assert list(_numbers(res["executors"])), "no executor numbers"
    # the parameter service of the node under test answered while it ran at 1 kHz
    ps = res["hop"]["residual_mixer"]["1000hz"]["parameter_service"]
    assert ps["answered"] >= 1, ps  # (one asked at the very end may still be on its way)
    # the fused node's Python per period, and where it goes
    step = res["node_step"]
    assert step["mode"] == "nominal" and step["period_us"]["p50"] > 0
    assert all(0.0 <= v <= 1.0 for v in step["profile_share"].values()), step["profile_share"]
    assert 0.0 < step["profile_share"]["policy step (observation, inference, envelope)"] < 1.0


def test_fused_specs_are_the_union_without_duplicates():
    from residual_control.core.params import BASE_PARAMS, MIXER_PARAMS, POLICY_PARAMS

    names = [s.name for s in FUSED_PARAMS]
    assert len(names) == len(set(names))
    assert set(names) == {s.name for s in MIXER_PARAMS + BASE_PARAMS + POLICY_PARAMS}
    by_name = {s.name: s for s in FUSED_PARAMS}
    assert not by_name["residual_limit"].read_only  # the mixer's live clamp


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fused")
    params = load_params()
    mixer = params["residual_mixer"]["ros__parameters"]
    mixer.update(residual_timeout=0.1, observation_timeout=0.3, base_timeout=0.3, recovery_hold_time=0.3,
                 recovery_ramp_time=0.6, diagnostics_period=0.2)
    policy = params["residual_policy"]["ros__parameters"]
    policy.update(control_rate_hz=RATE_HZ, perception_timeout=0.2)
    obs = default_observation_names(JOINTS, policy["perception_features"])
    w = np.zeros((len(obs), 2), np.float32)
    w[obs.index("a_base/elbow"), 0] = 0.5  # output order elbow, shoulder: matched by name
    w[obs.index("a_base/shoulder"), 1] = 0.5
    policy["model_path"] = linear_model(str(tmp / "linear.onnx"), ["elbow", "shoulder"], obs,
                                        [policy["residual_limit"][1], policy["residual_limit"][0]], weights=w,
                                        bias=[BIAS[1], BIAS[0]], control_rate_hz=RATE_HZ)
    params[NODE_NAME] = {"ros__parameters": fused_parameters(params)}
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    rclpy.init()
    probe = Probe(JOINTS, name="fused_probe", mixer=NODE_NAME)
    g = Graph([NodeSpec(NODE_NAME, [str(params_file)])], log_dir=tmp_path_factory.mktemp("logs"))
    try:
        driver = reach_nominal(g, probe, "fused node")
        yield params, g, probe, driver
    finally:
        g.stop()
        probe.destroy_node()
        rclpy.shutdown()


@pytest.mark.graph
def test_fused_commands_equal_the_formula_and_tuning_applies(fused):
    params, g, probe, driver = fused
    probe.rec.clear()
    assert driver.run_until(lambda: len(probe.rec.commands) >= 20, 20.0)
    expected, a_base = expected_command(params)
    for c in probe.rec.commands[-10:]:
        np.testing.assert_allclose(c.values, expected, atol=1e-6)
    applied = probe.rec.applied[-1]
    np.testing.assert_allclose(applied.values, expected - a_base, atol=1e-6)
    assert_commands_safe(params, probe)

    ok, reason = probe.set_remote_parameter(NODE_NAME, "residual_limit", [1.0, 0.5])
    assert ok, reason
    ok, reason = probe.set_remote_parameter(NODE_NAME, "residual_gain", 1.5)
    assert not ok and reason
    expected, _ = expected_command(params, residual_limit=[1.0, 0.5])
    assert driver.run_until(lambda: probe.mode == "nominal" and probe.rec.commands and np.allclose(
        probe.rec.commands[-1].values, expected, atol=1e-6), 20.0), probe.rec.commands[-1:]
    ok, reason = probe.set_remote_parameter(NODE_NAME, "residual_limit",
                                            params["residual_mixer"]["ros__parameters"]["residual_limit"])
    assert ok, reason


@pytest.mark.graph
def test_fused_falls_back_when_perception_stops_and_recovers(fused):
    params, g, probe, driver = fused
    _, a_base = expected_command(params)
    m = params["residual_mixer"]["ros__parameters"]
    assert driver.run_until(lambda: probe.mode == "nominal", 20.0)
    probe.rec.clear()
    driver.perception = False
    assert driver.run_until(lambda: probe.mode == "fallback", 10.0), probe.rec.modes
    assert driver.run_until(lambda: any("perception lost" in s.message for _, s in probe.rec.diagnostics
                                        if s.name == f"{NODE_NAME}: policy"), 5.0)
    driver.run_for(0.2)
    np.testing.assert_allclose(probe.rec.commands[-1].values, np.clip(a_base, m["command_min"], m["command_max"]),
                               atol=1e-6)
    driver.perception = True
    assert driver.run_until(lambda: probe.mode == "nominal", 20.0), probe.rec.modes
    modes = [x[2].split(":")[0] for x in probe.rec.modes]
    assert "recovering" in modes, modes
    assert_commands_safe(params, probe)
