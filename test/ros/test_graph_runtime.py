"""The three runtime nodes as separate processes over real DDS, driven by a probe node.

The probe plays the robot and the perception (joint_states, reference,
perception) and records base_action, residual_action, commands, the applied
residual and the mode. The residual model is a small synthetic ONNX graph with
a known closed form (da = 0.5 * a_base + b, clipped), so the expected command
can be computed independently from the params file.
"""
from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticStatus

from residual_control.core.observation import default_observation_names
from residual_control.harness.graph import Graph, NodeSpec, runtime_specs
from residual_control.harness.probe import Probe
from residual_control.harness.synthetic_models import linear_model

from support.graph_drive import (BIAS, JOINTS, PERIOD, RATE_HZ, assert_commands_safe, expected_command,
                                 load_params, reach_nominal)

pytestmark = pytest.mark.graph

RESIDUAL_TIMEOUT = 0.1
# Scheduling slack for a loaded 2-core CI machine (DDS hop + Python wake-up).
SLACK = 0.1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graph")
    params = load_params()
    mixer = params["residual_mixer"]["ros__parameters"]
    mixer.update(residual_timeout=RESIDUAL_TIMEOUT, observation_timeout=0.3, base_timeout=0.3,
                 recovery_hold_time=0.3, recovery_ramp_time=0.6, diagnostics_period=0.2,
                 # the step fallback and stop are measured here; the decay and damp in test_mixer/test_safe_stop
                 fallback_ramp_time=0.0, base_stale_behavior="stop")
    policy = params["residual_policy"]["ros__parameters"]
    policy["control_rate_hz"] = RATE_HZ
    policy["perception_timeout"] = 0.2
    obs = default_observation_names(JOINTS, policy["perception_features"])
    w = np.zeros((len(obs), 2), np.float32)
    # Output order elbow, shoulder: the mixer must match by name.
    w[obs.index("a_base/elbow"), 0] = 0.5
    w[obs.index("a_base/shoulder"), 1] = 0.5
    model = linear_model(str(tmp / "linear.onnx"), ["elbow", "shoulder"], obs,
                         [policy["residual_limit"][1], policy["residual_limit"][0]], weights=w,
                         bias=[BIAS[1], BIAS[0]], control_rate_hz=RATE_HZ)
    policy["model_path"] = model
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    return params, str(params_file)


@pytest.fixture(scope="module")
def graph(setup, tmp_path_factory):
    params, params_file = setup
    rclpy.init()
    probe = Probe(JOINTS, name="graph_probe")
    g = Graph(runtime_specs(params_file), log_dir=tmp_path_factory.mktemp("logs"))
    try:
        driver = reach_nominal(g, probe, "graph")
        yield params, params_file, g, probe, driver
    finally:
        g.stop()
        probe.destroy_node()
        rclpy.shutdown()


def test_commands_equal_the_formula(graph):
    params, _, g, probe, driver = graph
    probe.rec.clear()
    expected, a_base = expected_command(params)
    # Ten commands in a row equal to the formula: on a loaded machine a starved policy makes the
    # mixer fall back for a while (commands clip(a_base), mode fallback), which is not a wrong formula.
    formula = lambda c: np.allclose(c.values, expected, atol=1e-6)  # noqa: E731
    driver.run_until(lambda: len(probe.rec.commands) >= 10 and all(map(formula, probe.rec.commands[-10:]))
                     and probe.mode == "nominal", 30.0)
    # The base action itself, by name.
    base = probe.rec.base[-1]
    order = [base.names.index(j) for j in JOINTS]
    np.testing.assert_allclose(base.values[order], a_base, atol=1e-9)
    for c in probe.rec.commands[-10:]:
        np.testing.assert_allclose(c.values, expected, atol=1e-6)
    assert probe.mode == "nominal"
    assert_commands_safe(params, probe)


def test_every_node_runs_on_the_lean_loop_and_says_so_on_diagnostics(graph):
    """The default loop (parameter ``executor``: lean) is the one the behaviour tests of this module run on."""
    _, _, _, probe, driver = graph
    names = {"residual_mixer: mode", "residual_policy", "base_controller"}

    def loops():
        return {s.name: {kv.key: kv.value for kv in s.values}.get("loop") for _, s in probe.rec.diagnostics
                if s.name in names}
    assert driver.run_until(lambda: set(loops()) == names, 30.0), loops()
    assert set(loops().values()) == {"lean"}, loops()


def test_live_tuning_takes_effect_and_invalid_values_are_rejected(graph):
    params, _, g, probe, driver = graph
    ok, reason = probe.set_remote_parameter("residual_mixer", "residual_limit", [1.0, 0.5])
    assert ok, reason
    expected, _ = expected_command(params, residual_limit=[1.0, 0.5])
    probe.rec.clear()
    assert driver.run_until(
        lambda: probe.rec.commands and np.allclose(probe.rec.commands[-1].values, expected, atol=1e-6), 10.0), \
        f"clamp change not applied: last {probe.rec.commands[-1:]}, expected {expected}"

    m = params["residual_mixer"]["ros__parameters"]
    invalid = [
        ("residual_limit", [-1.0, 0.5], ">= 0"),
        ("residual_limit", [float("nan"), 0.5], "finite"),
        ("residual_limit", [1.0], "2 values"),
        ("residual_limit", [m["residual_limit_max"][0] + 1.0, 0.5], "residual_limit_max"),
        ("residual_limit", "big", "list of numbers"),
        ("residual_gain", 1.5, "<= 1|out of range"),
        ("residual_gain", -0.1, ">= 0|out of range"),
        ("residual_timeout", 0.0, ">=|out of range"),
        ("command_min", [100.0, 100.0], "command_min <= command_max"),
        ("residual_limit_max", [100.0, 100.0], "read-only"),
        ("base_stale_behavior", "explode", "one of"),
    ]
    for name, value, why in invalid:
        ok, reason = probe.set_remote_parameter("residual_mixer", name, value)
        assert not ok, f"{name}={value!r} was accepted"
        assert re.search(why, reason), f"{name}={value!r}: reason {reason!r} does not say {why!r}"
    assert probe.get_remote_parameter("residual_mixer", "residual_limit") == [1.0, 0.5]
    # The probe paused the robot side while it called the services: the
    # residual went stale meanwhile, so wait for the mixer to ramp it back.
    # Every command is either the fallback clip(a_base) or the tuned formula; the
    # tuned formula must show up again once the mixer is back to nominal.
    probe.rec.clear()
    assert driver.run_until(
        lambda: probe.rec.commands and np.allclose(probe.rec.commands[-1].values, expected, atol=1e-6), 30.0), \
        f"tuned clamp lost: last {probe.rec.commands[-1:]}, expected {expected}"
    _, a_base = expected_command(params)
    fallback = np.clip(a_base, m["command_min"], m["command_max"])
    for c in probe.rec.commands:
        assert np.allclose(c.values, expected, atol=1e-6) or np.allclose(c.values, fallback, atol=1e-6) \
            or np.all(np.abs(c.values - fallback) <= np.abs(expected - fallback) + 1e-6), c.values

    ok, reason = probe.set_remote_parameter("residual_mixer", "residual_limit", m["residual_limit"])
    assert ok, reason
    ok, reason = probe.set_remote_parameter("residual_mixer", "residual_gain", 1)  # an integer is accepted
    assert ok, reason


def test_kill_residual_policy_falls_back_in_time_then_recovers_with_a_ramp(graph):
    params, params_file, g, probe, driver = graph
    _, a_base = expected_command(params)
    driver.run_until(lambda: probe.mode == "nominal", 20.0)
    probe.rec.clear()
    driver.run_for(0.3)
    kill_time = probe.ros_now()
    g["residual_policy"].kill9()
    assert driver.run_until(lambda: probe.mode == "fallback", 10.0), probe.rec.modes
    driver.run_for(0.3)
    # The first command without residual, judged by its base action's stamp.
    fallback_stamp = next(a.stamp for a in probe.rec.applied if a.stamp >= kill_time and not np.any(a.values))
    latency = fallback_stamp - kill_time
    assert latency <= RESIDUAL_TIMEOUT + PERIOD + SLACK, f"fallback after {latency:.3f} s"
    fb = probe.rec.commands[-1].values
    np.testing.assert_allclose(fb, np.clip(a_base, params["residual_mixer"]["ros__parameters"]["command_min"],
                                           params["residual_mixer"]["ros__parameters"]["command_max"]), atol=1e-6)
    assert_commands_safe(params, probe)

    # Restart: the residual comes back through the hold and the ramp.
    probe.rec.clear()
    g.start(runtime_specs(params_file)[1])
    assert driver.run_until(lambda: probe.mode == "nominal", 60.0), probe.rec.modes
    modes = [m[2].split(":")[0] for m in probe.rec.modes]
    assert "recovering" in modes, modes
    ramp = [np.abs(a.values).max() for a in probe.rec.applied]
    rising = [x for x in ramp if 0 < x < max(ramp) - 1e-9]
    assert rising, "no intermediate gain seen during the ramp"
    # Monotonic while it ramps; a fallback meanwhile (a starved policy on a loaded machine) drops the
    # applied residual to 0 at once (fallback_ramp_time 0 here) and the ramp starts again from there.
    assert all(b >= a - 1e-9 or b == 0.0 for a, b in zip(ramp, ramp[1:])), f"ramp not monotonic: {ramp}"
    assert_commands_safe(params, probe)


def test_stopping_perception_triggers_fallback_and_resuming_recovers(graph):
    params, _, g, probe, driver = graph
    driver.run_until(lambda: probe.mode == "nominal", 20.0)
    probe.rec.clear()
    driver.perception = False
    assert driver.run_until(lambda: probe.mode == "fallback", 10.0), probe.rec.modes
    reasons = [s.message for _, s in probe.rec.diagnostics if s.name == "residual_policy"]
    assert driver.run_until(lambda: any("perception lost" in s.message for _, s in probe.rec.diagnostics
                                        if s.name == "residual_policy"), 5.0), reasons[-3:]
    driver.perception = True
    assert driver.run_until(lambda: probe.mode == "nominal", 20.0), probe.rec.modes
    assert_commands_safe(params, probe)


def test_mixer_rejects_bad_residual_messages(graph):
    """A residual with unknown, missing or duplicate names, or NaN, makes the mixer fall back."""
    params, _, g, probe, driver = graph
    m = params["residual_mixer"]["ros__parameters"]
    g["residual_policy"].kill9()
    assert driver.run_until(lambda: probe.mode == "fallback", 10.0)
    bad = [(["shoulder", "wrist"], [0.1, 0.1]), (["shoulder"], [0.1]), (["shoulder", "shoulder"], [1.0, 1.0]),
           (["shoulder", "elbow"], [math.nan, 0.0]), (["shoulder", "elbow"], [math.inf, 0.0]),
           (["shoulder", "elbow"], [1e300, -1e300])]
    for names, values in bad:
        probe.rec.clear()
        # Publish the bad residual in lockstep with the base action for a while.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            driver.tick()
            probe.publish_residual(names, values)
        if not np.all(np.isfinite(values)) or len(set(names)) != len(names) or set(names) != set(JOINTS):
            # base_fault (a base action starved past base_timeout on a loaded machine) applies no residual either.
            starved = probe.mode == "base_fault" and "base action stale" in probe.rec.modes[-1][2]
            assert probe.mode == "fallback" or starved, (names, values, probe.rec.modes[-3:])
        else:  # huge but finite: accepted, clamped to the bound
            for a in probe.rec.applied:
                assert np.all(np.abs(a.values) <= np.asarray(m["residual_limit"]) + 1e-9)
        assert_commands_safe(params, probe)


def test_base_timeout_stop_behaviour(graph):
    """With base_stale_behavior stop, the mixer publishes nothing once the base action stops."""
    params, params_file, g, probe, driver = graph
    g["base_controller"].kill9()
    assert driver.run_until(lambda: probe.mode == "base_fault", 10.0), probe.rec.modes
    # Drain first: on a loaded machine the probe's command queue can still hold commands the mixer
    # published before the fault when the (separate, latched) mode message has already been taken.
    driver.run_for(0.5)
    probe.rec.clear()
    driver.run_for(0.5)
    assert probe.rec.commands == []
    assert any(s.level == DiagnosticStatus.ERROR and s.name == "residual_mixer: mode" for _, s in probe.rec.diagnostics)
    g.start(NodeSpec("base_controller", [params_file]))
    ok = driver.run_until(lambda: len(probe.rec.commands) > 5, 60.0)
    base = g["base_controller"]
    assert ok, (f"no commands 60 s after the base controller restarted: base actions seen {len(probe.rec.base)}, "
                f"modes {probe.rec.modes[-5:]}, base controller alive {base.alive()}, "
                f"its log: {base.output()[-3000:]}")
