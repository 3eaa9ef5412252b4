"""`residual-control up`: the launch file's graph for machines without launch_ros.

Starts the three runtime nodes from the params file with a namespace and a
remapped command topic, checks they answer a joint state with a command on
the remapped topic, and that SIGINT stops every process it started.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from std_msgs.msg import Float64MultiArray

from residual_control.nodes.qos import CONTROL_QOS
from residual_control.harness.probe import Probe
from support.processes import stop_group

pytestmark = pytest.mark.graph


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def test_up_starts_the_graph_in_a_namespace_and_stops_it(tmp_path):
    cli = Path(sys.executable).parent / "residual-control"
    proc = subprocess.Popen([str(cli), "up", "--namespace", "arm", "--command-topic", "/arm/effort/commands",
                             "--log-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    rclpy.init()
    probe = Probe(["shoulder", "elbow"], name="up_probe", namespace="/arm")
    commands = []
    probe.create_subscription(Float64MultiArray, "/arm/effort/commands",
                              lambda m: commands.append(np.asarray(m.data)), CONTROL_QOS)
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not commands:
            probe.publish_reference([0.3, 0.5], [0.0, 0.0])
            probe.publish_state([0.3, 0.5], [0.0, 0.0])
            probe.spin_for(0.05)
            assert proc.poll() is None, proc.stdout.read()
        assert commands, "no command on the remapped topic within 60 s"
        assert commands[-1].shape == (2,) and np.all(np.isfinite(commands[-1]))
        wanted = {("base_controller", "/arm"), ("residual_policy", "/arm"), ("residual_mixer", "/arm")}
        assert probe.spin_until(lambda: wanted <= set(probe.get_node_names_and_namespaces()), 30.0), \
            probe.get_node_names_and_namespaces()
        children = _children(proc.pid)
        assert len(children) == 3, children
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        stop_group(proc, 30, strict=True)
    assert proc.returncode == 0, proc.stdout.read()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], \
            f"node process {pid} still running after SIGINT"
