"""Black-box acceptance of the installed `residual_mixer` executable.

Starts ``.venv/bin/residual_mixer`` (the console script, as a user would) with
a params file of this test's own (three joints, other limits) and remapped
topics, and talks to it only through DDS: it publishes base and residual
actions with shuffled joint names and checks the formula, name matching,
fallback on a stale residual, the ramped recovery, live tuning through the
SetParameters service and the rejection of invalid values.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from residual_control.nodes.qos import CONTROL_QOS, LATCHED_QOS
from residual_control.harness.probe import Probe
from support.processes import stop_group, tick_until

pytestmark = pytest.mark.graph

JOINTS = ["hip", "knee", "ankle"]
EPS = [2.0, 1.0, 0.5]
CMIN = [-10.0, -8.0, -4.0]
CMAX = [10.0, 8.0, 4.0]
TIMEOUT = 0.15
HOLD, RAMP = 0.3, 0.6
RATE = 50.0


def _executable() -> str:
    exe = Path(sys.executable).parent / "residual_mixer"
    if not exe.exists():
        found = shutil.which("residual_mixer")
        assert found, f"residual_mixer: expected the console script next to {sys.executable}, found none"
        return found
    return str(exe)


@pytest.fixture(scope="module")
def mixer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blackbox")
    params = {"residual_mixer": {"ros__parameters": {
        "joints": JOINTS, "residual_limit": EPS, "residual_limit_max": [4.0, 2.0, 1.0], "residual_gain": 1.0,
        "command_min": CMIN, "command_max": CMAX, "residual_timeout": TIMEOUT, "observation_timeout": 0.5,
        "base_timeout": 0.5, "recovery_hold_time": HOLD, "recovery_ramp_time": RAMP,
        "base_stale_behavior": "stop", "diagnostics_period": 0.5, "fallback_ramp_time": 0.0,
        "damp_kd": [1.0, 1.0, 1.0], "damp_gravity": False}}}
    params_file = tmp / "mine.yaml"
    params_file.write_text(yaml.safe_dump(params))
    log = open(tmp / "mixer.log", "wb")
    proc = subprocess.Popen(
        [_executable(), "--ros-args", "--params-file", str(params_file),
         "-r", "base_action:=/robot/a_base", "-r", "residual_action:=/robot/delta",
         "-r", "commands:=/robot/effort_controller/commands"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    client = Client()
    try:
        yield client, proc
    finally:
        client.destroy_node()
        rclpy.shutdown()
        stop_group(proc)
        log.close()


class Client(Probe):
    """Talks to the remapped topics only."""

    def __init__(self) -> None:
        super().__init__(JOINTS, name="blackbox_client")
        self.base_out = self.create_publisher(JointState, "/robot/a_base", CONTROL_QOS)
        self.delta_out = self.create_publisher(JointState, "/robot/delta", CONTROL_QOS)
        self.commands = []
        self.create_subscription(Float64MultiArray, "/robot/effort_controller/commands",
                                 lambda m: self.commands.append(np.asarray(m.data)), CONTROL_QOS)
        self.create_subscription(String, "/residual_mixer/mode", self._on_mode, LATCHED_QOS)
        self.base = np.array([3.0, -7.5, 1.0])
        self.delta = np.array([1.0, -5.0, 0.25])  # knee beyond its bound: clamped
        self.send_delta = True
        self._next = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = max(self._next + 1.0 / RATE, now - 1.0 / RATE)
            stamp = self.stamp_now()
            order = [2, 0, 1]  # shuffled, differently for the two messages
            b = JointState(name=[JOINTS[i] for i in order], effort=[float(self.base[i]) for i in order])
            b.header.stamp = stamp
            if self.send_delta:
                order_d = [1, 2, 0]
                d = JointState(name=[JOINTS[i] for i in order_d], effort=[float(self.delta[i]) for i in order_d])
                d.header.stamp = stamp
                self.delta_out.publish(d)
            self.base_out.publish(b)
        rclpy.spin_once(self, timeout_sec=0.002)

    def run_until(self, predicate, timeout: float) -> bool:
        return tick_until(self.tick, predicate, timeout)


def expected(base, delta, eps, gain=1.0):
    return np.clip(base + gain * np.clip(delta, -np.asarray(eps), eps), CMIN, CMAX)


def test_blackbox_mixer(mixer):
    client, proc = mixer
    want = expected(client.base, client.delta, EPS)
    assert client.run_until(lambda: client.mode == "nominal", 60.0), \
        f"never nominal (exit {proc.poll()}): modes {client.rec.modes}"
    assert client.run_until(lambda: client.commands and np.allclose(client.commands[-1], want), 10.0)
    np.testing.assert_allclose(client.commands[-1], want, atol=1e-9)  # formula, by name, clamped

    # Stale residual: fallback to clip(a_base) within the timeout (plus scheduling slack).
    client.commands.clear()
    client.send_delta = False
    stopped = time.monotonic()
    assert client.run_until(lambda: client.mode == "fallback", 10.0)
    latency = time.monotonic() - stopped
    assert latency <= TIMEOUT + 1.0 / RATE + 0.25, latency
    assert client.run_until(
        lambda: client.commands and np.allclose(client.commands[-1], np.clip(client.base, CMIN, CMAX)), 5.0)

    # Recovery: held, then ramped: intermediate commands between fallback and nominal.
    client.commands.clear()
    client.send_delta = True
    resumed = time.monotonic()
    assert client.run_until(lambda: client.mode == "nominal", 20.0)
    assert time.monotonic() - resumed >= HOLD + RAMP - 0.05
    fb = np.clip(client.base, CMIN, CMAX)
    steps = [np.abs(c - fb).max() for c in client.commands]
    assert any(0 < s < np.abs(want - fb).max() - 1e-6 for s in steps), "no ramp seen"
    assert all(b >= a - 1e-9 for a, b in zip(steps, steps[1:])), "ramp not monotonic"

    # Live tuning through SetParameters takes effect on the next command.
    ok, reason = client.set_remote_parameter("residual_mixer", "residual_limit", [0.5, 0.5, 0.5])
    assert ok, reason
    want2 = expected(client.base, client.delta, [0.5, 0.5, 0.5])
    assert client.run_until(lambda: client.commands and np.allclose(client.commands[-1], want2), 20.0)

    # Invalid values: refused with a reason, nothing changes.
    for name, value in [("residual_limit", [0.5, 0.5]), ("residual_limit", [0.5, 0.5, 9.0]),
                        ("residual_limit", [0.5, -0.5, 0.5]), ("residual_gain", 2.0),
                        ("command_max", [-20.0, 8.0, 4.0]), ("joints", ["a", "b", "c"])]:
        ok, reason = client.set_remote_parameter("residual_mixer", name, value)
        assert not ok and reason, (name, value, reason)
    assert client.get_remote_parameter("residual_mixer", "residual_limit") == [0.5, 0.5, 0.5]
    assert proc.poll() is None, "the mixer died"
