"""The three-node graph's test drive, shared by the ROS graph tests and the fused-node comparison.

A probe publishes the robot side (reference, perception, state, in shuffled joint order) at RATE_HZ;
`expected_command` is the mixer formula applied to the base controller's output at that state and the
synthetic linear model's residual (0.5 * a_base + BIAS).
"""
from __future__ import annotations

import copy
import time

import numpy as np
import rclpy

from .processes import tick_until

from residual_control.core.base_controllers import make_base_controller
from residual_control.robot.nominal import nominal_model
from residual_control import params_file
from residual_control.core.params import NODE_PARAMS
from residual_control.harness.probe import Probe, command_violations
from residual_control.paths import default_params_file

JOINTS = ["shoulder", "elbow"]
RATE_HZ = 50.0
PERIOD = 1.0 / RATE_HZ
Q = np.array([0.1, 0.2])
Q_REF = np.array([0.3, 0.1])
BIAS = np.array([0.4, -9.0])  # elbow: far beyond its bound, to be clamped


def load_params() -> dict:
    """Return the shipped params file, as YAML, with a section per node (the fused one too).

    Each section holds what the node runs with: the schema's defaults and the robot's values of ``/**``
    that the node declares.
    """
    params = params_file.load(default_params_file())
    for node in NODE_PARAMS:
        params[node] = {"ros__parameters": copy.deepcopy(params_file.node_params(params, node))}
    return params


def expected_command(params, residual_gain=None, residual_limit=None):
    base_p = {**params["/**"]["ros__parameters"], **params["base_controller"]["ros__parameters"]}
    flat = {k: v for k, v in base_p.items() if k != "model"}
    flat.update({f"model.{k}": v for k, v in base_p["model"].items()})
    a_base = make_base_controller(flat, nominal_model(flat)).compute(Q, np.zeros(2), Q_REF, np.zeros(2), 0.0)
    m = params["residual_mixer"]["ros__parameters"]
    eps = np.asarray(residual_limit if residual_limit is not None else m["residual_limit"])
    g = m["residual_gain"] if residual_gain is None else residual_gain
    da = 0.5 * a_base + BIAS
    return np.clip(a_base + g * np.clip(da, -eps, eps), m["command_min"], m["command_max"]), a_base


class Driver:
    """Publishes the robot side at RATE_HZ from the probe's own loop."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.perception = True
        self._next = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = max(self._next + PERIOD, now - PERIOD)
            # Shuffled joint order on purpose: the nodes match by name.
            self.probe.publish_reference(Q_REF[::-1], [0.0, 0.0], names=JOINTS[::-1])
            if self.perception:
                self.probe.publish_perception([0.5])
            self.probe.publish_state(Q[::-1], [0.0, 0.0], names=JOINTS[::-1])
        rclpy.spin_once(self.probe, timeout_sec=0.002)

    def run_until(self, predicate, timeout: float) -> bool:
        return tick_until(self.tick, predicate, timeout)

    def run_for(self, duration: float) -> None:
        self.run_until(lambda: False, duration)


def reach_nominal(graph, probe: Probe, what: str, timeout: float = 60.0) -> Driver:
    """Drive the robot side until the mixer reports nominal; fails naming a dead node or the last modes."""
    driver = Driver(probe)
    ok = driver.run_until(lambda: probe.mode == "nominal", timeout)
    if not ok:
        graph.check_alive()
    assert ok, f"{what} never reached nominal; modes {probe.rec.modes[-5:]}"
    return driver


def assert_commands_safe(params, probe) -> None:
    """Commands were recorded, and every one is finite and within the mixer's command limits."""
    m = params["residual_mixer"]["ros__parameters"]
    cmds = [c.values for c in probe.rec.commands]
    assert cmds, "no commands recorded"
    assert command_violations(cmds, m["command_min"], m["command_max"]) == 0
