"""The training envelope at run time, live over DDS.

residual_policy (in the three-node graph) runs a synthetic model whose
metadata declares an envelope with qd/shoulder in [-1, 1] rad/s. The probe
plays the robot: with the state inside, residuals flow and the mixer is
nominal; with qd/shoulder = 5 rad/s for longer than envelope_debounce, the
policy reports out_of_envelope (feature, distance) on /diagnostics and stops
publishing, the mixer falls back; back inside, it recovers. The fused
residual_controller runs a model without an envelope: it keeps working and
warns once.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rclpy
import yaml

from residual_control.core.envelope import METADATA_KEY
from residual_control.core.observation import default_observation_names
from residual_control.harness.graph import Graph, NodeSpec, runtime_specs, wait_for
from residual_control.harness.probe import Probe, command_violations
from residual_control.harness.synthetic_models import linear_model

from support.graph_drive import load_params

pytestmark = pytest.mark.graph

JOINTS = ["shoulder", "elbow"]
RATE_HZ = 50.0
PERIOD = 1.0 / RATE_HZ
Q = np.array([0.1, 0.2])
Q_REF = np.array([0.3, 0.1])
QD_LIMIT = 1.0
DEBOUNCE = 0.2


def _params(tmp, envelope: bool):
    params = load_params()  # a section per node: the robot's values and the defaults
    params["residual_mixer"]["ros__parameters"].update(
        residual_timeout=0.1, observation_timeout=0.3, base_timeout=0.3, recovery_hold_time=0.3,
        recovery_ramp_time=0.5, diagnostics_period=0.2)
    policy = params["residual_policy"]["ros__parameters"]
    policy.update(control_rate_hz=RATE_HZ, perception_timeout=0.3, envelope_debounce=DEBOUNCE,
                  diagnostics_period=0.2)
    obs = default_observation_names(JOINTS, policy["perception_features"])
    extra = {}
    if envelope:
        low, high = [-100.0] * len(obs), [100.0] * len(obs)
        i = obs.index("qd/shoulder")
        low[i], high[i] = -QD_LIMIT, QD_LIMIT
        extra[METADATA_KEY] = json.dumps({"names": obs, "low": low, "high": high, "margin": 0.0, "n_samples": 1})
    w = np.zeros((len(obs), 2), np.float32)
    model = linear_model(str(tmp / f"model_{envelope}.onnx"), JOINTS, obs, policy["residual_limit"], weights=w,
                         bias=[1.0, -0.5], control_rate_hz=RATE_HZ, extra_metadata=extra)
    policy["model_path"] = model
    path = tmp / f"params_{envelope}.yaml"
    path.write_text(yaml.safe_dump(params))
    return params, str(path)


class Driver:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.qd = np.zeros(2)
        self._next = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = max(self._next + PERIOD, now - PERIOD)
            self.probe.publish_reference(Q_REF, [0.0, 0.0])
            self.probe.publish_perception([0.5])
            self.probe.publish_state(Q, self.qd)
        rclpy.spin_once(self.probe, timeout_sec=0.002)

    def run_until(self, predicate, timeout: float) -> bool:
        return wait_for(predicate, timeout, interval=0.0, spin=self.tick)


def _policy_values(probe, name="residual_policy"):
    """Key/values of the newest status of ``name`` on /diagnostics ({} if none yet)."""
    for _, s in reversed(probe.rec.diagnostics):
        if s.name == name:
            return {kv.key: kv.value for kv in s.values} | {"_message": s.message}
    return {}


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def test_policy_reports_out_of_envelope_stops_publishing_and_recovers(ros, tmp_path):
    params, params_file = _params(tmp_path, envelope=True)
    probe = Probe(JOINTS, name="envelope_probe")
    driver = Driver(probe)
    try:
        with Graph(runtime_specs(params_file), log_dir=tmp_path / "logs") as g:
            ok = driver.run_until(lambda: probe.mode == "nominal", 60.0)
            if not ok:
                g.check_alive()
            assert ok, f"graph never reached nominal; modes {probe.rec.modes[-5:]}"
            assert driver.run_until(lambda: _policy_values(probe).get("envelope") == "inside", 10.0), \
                _policy_values(probe)
            assert _policy_values(probe)["envelope_trips"] == "0"

            # Outside: qd/shoulder 5 rad/s, 4 above the bound.
            probe.rec.clear()
            driver.qd = np.array([5.0, 0.0])
            assert driver.run_until(lambda: _policy_values(probe).get("envelope") == "out_of_envelope", 10.0), \
                _policy_values(probe)
            v = _policy_values(probe)
            assert v["envelope_feature"] == "qd/shoulder"
            assert float(v["envelope_excess"]) == pytest.approx(4.0)
            assert v["envelope_trips"] == "1"
            assert "out_of_envelope: qd/shoulder = 5 is 4 above" in v["_message"], v["_message"]
            assert driver.run_until(lambda: probe.mode == "fallback", 10.0), probe.rec.modes[-5:]
            # No residual is published while outside (after the one in flight at the trip).
            driver.run_until(lambda: False, 0.3)
            n = len(probe.rec.residual)
            n_commands = len(probe.rec.commands)
            driver.run_until(lambda: False, 1.0)
            assert len(probe.rec.residual) == n, "residual_action published while out of the envelope"
            assert len(probe.rec.commands) > n_commands + 10, "the mixer must keep commanding (fallback)"
            assert probe.mode == "fallback"

            # Back inside: residuals resume, the mixer holds and ramps back to nominal.
            driver.qd = np.zeros(2)
            assert driver.run_until(lambda: probe.mode == "nominal", 20.0), probe.rec.modes[-5:]
            assert len(probe.rec.residual) > n
            assert driver.run_until(lambda: _policy_values(probe).get("envelope") == "inside", 10.0)
            modes = [text.split(":")[0] for _, _, text in probe.rec.modes]
            assert "recovering" in modes, modes

            # envelope_check off: outside, the residual keeps flowing.
            ok, reason = probe.set_remote_parameter("residual_policy", "envelope_check", False)
            assert ok, reason
            driver.qd = np.array([5.0, 0.0])
            assert driver.run_until(lambda: _policy_values(probe).get("envelope", "").startswith("off"), 10.0)
            n = len(probe.rec.residual)
            assert driver.run_until(lambda: len(probe.rec.residual) > n + 10, 10.0), "no residual with the check off"
            # (a loaded machine may delay a residual past residual_timeout: wait for nominal, do not sample it)
            assert driver.run_until(lambda: probe.mode == "nominal", 20.0), probe.rec.modes[-5:]
            assert _policy_values(probe)["envelope_trips"] == "1"
            # The debounce is a parameter with a range.
            ok, reason = probe.set_remote_parameter("residual_policy", "envelope_debounce", -1.0)
            assert not ok and "envelope_debounce" in reason, reason
            m = params["residual_mixer"]["ros__parameters"]
            assert command_violations([c.values for c in probe.rec.commands], m["command_min"], m["command_max"]) == 0
            g.check_alive()
    finally:
        probe.destroy_node()


def test_fused_node_runs_a_model_without_envelope_with_one_warning(ros, tmp_path):
    from residual_control.nodes.residual_controller import fused_parameters

    _params_dict, params_file = _params(tmp_path, envelope=False)
    with open(params_file) as f:
        fused = {"residual_controller": {"ros__parameters": fused_parameters(yaml.safe_load(f))}}
    fused_file = tmp_path / "fused.yaml"
    fused_file.write_text(yaml.safe_dump(fused))
    probe = Probe(JOINTS, name="envelope_fused_probe", mixer="residual_controller")
    driver = Driver(probe)
    try:
        with Graph([NodeSpec("residual_controller", [str(fused_file)])], log_dir=tmp_path / "logs") as g:
            ok = driver.run_until(lambda: probe.mode == "nominal", 60.0)
            if not ok:
                g.check_alive()
            assert ok, f"never nominal; modes {probe.rec.modes[-5:]}"
            driver.qd = np.array([5.0, 0.0])  # would be outside any envelope like the one above
            name = "residual_controller: policy"
            assert driver.run_until(lambda: _policy_values(probe, name).get("envelope", "").startswith("none"),
                                    10.0), _policy_values(probe, name)
            n = int(_policy_values(probe, name)["residuals"])
            # Residuals keep being computed with the state far outside (waits on conditions: a loaded
            # machine may delay a sample past observation_timeout, which is a fallback of another kind).
            assert driver.run_until(lambda: int(_policy_values(probe, name)["residuals"]) > n + 20, 20.0), \
                _policy_values(probe, name)
            assert driver.run_until(lambda: probe.mode == "nominal", 20.0), probe.rec.modes[-5:]
            v = _policy_values(probe, name)
            assert v["envelope_trips"] == "0" and "out_of_envelope" not in v["_message"], v
            out = g["residual_controller"].output()
            assert out.count("declares no observation_envelope") == 1, out[-2000:]
    finally:
        probe.destroy_node()
