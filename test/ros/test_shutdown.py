"""Every node executable exits 0, without a traceback, on any number of SIGINT/SIGTERM.

``ros2 launch`` sends SIGINT again when its stdin is not a terminal (systemd,
``timeout``, CI), and then SIGTERM: a second signal during the node's
shutdown must not kill it with a KeyboardInterrupt traceback (exit -2) or the
default SIGTERM action (exit -15). Each case starts the executables of
.venv/bin, waits until each node is in the ROS graph, then sends the first
signal and repeats it every 5 ms until the process has exited.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
import yaml

from residual_control import params_file
from residual_control.harness.probe import Probe
from residual_control.launch_params import scope_to_any_namespace

from support import ROOT

pytestmark = pytest.mark.graph

BIN = Path(sys.executable).parent
PARAMS = str(ROOT / "config" / "residual_control.yaml")
REFERENCE = str(ROOT / "config" / "reference.yaml")
EXECUTABLES = {
    "base_controller": [PARAMS],
    "residual_policy": [PARAMS],
    "residual_mixer": [PARAMS],
    "residual_controller": [PARAMS],
    "mujoco_sim": [PARAMS],
    "reference_publisher": [PARAMS, REFERENCE],
    "perception": [PARAMS],
}
CASES = {
    "sigint_repeated": (signal.SIGINT, signal.SIGINT),
    "sigterm_repeated": (signal.SIGTERM, signal.SIGTERM),
    "sigint_then_sigterm": (signal.SIGINT, signal.SIGTERM),
}


def _scoped(path: str, folder: Path) -> str:
    """Return a copy of a params file whose node-name keys match in any namespace (as the launch files pass it)."""
    out = folder / f"scoped_{Path(path).name}"
    if not out.exists():
        out.write_text(yaml.safe_dump(scope_to_any_namespace(params_file.load(path))))
    return str(out)


def _start(exe: str, namespace: str, log_dir: Path) -> tuple[subprocess.Popen, Path]:
    cmd = [str(BIN / exe), "--ros-args", "-r", f"__ns:={namespace}"]
    for f in EXECUTABLES[exe]:
        cmd += ["--params-file", _scoped(f, log_dir)]
    log = log_dir / f"{exe}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return proc, log


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_node_exits_0_on_repeated_stop_signals(tmp_path, case):
    first, again = CASES[case]
    namespace = f"/shutdown_{case}"
    rclpy.init()  # first: should it fail, no process is left running
    procs = {exe: _start(exe, namespace, tmp_path) for exe in EXECUTABLES}
    probe = Probe(["shoulder", "elbow"], name="shutdown_probe", namespace=namespace)
    try:
        up = probe.spin_until(
            lambda: set(EXECUTABLES) <= {n for n, ns in probe.get_node_names_and_namespaces() if ns == namespace}
            or any(p.poll() is not None for p, _ in procs.values()), 90.0)
        dead = {exe: p.returncode for exe, (p, _) in procs.items() if p.poll() is not None}
        if not (up and not dead):
            for p, _ in procs.values():  # stop the others before failing: no process outlives the test
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)
        assert up and not dead, (dead, {e: log.read_text(errors="replace")[-1500:] for e, (_, log) in procs.items()
                                        if e in dead})
    finally:
        probe.destroy_node()
        rclpy.shutdown()
    codes, sent = {}, {exe: 0 for exe in procs}
    try:
        for exe, (p, _) in procs.items():
            p.send_signal(first)
            sent[exe] += 1
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and len(codes) < len(procs):
            time.sleep(0.005)
            for exe, (p, _) in procs.items():
                if exe in codes:
                    continue
                if p.poll() is not None:
                    codes[exe] = p.returncode
                else:
                    try:
                        p.send_signal(again)
                        sent[exe] += 1
                    except ProcessLookupError:
                        pass
    finally:
        for exe, (p, _) in procs.items():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGUSR1)  # run_node's faulthandler: every thread's stack into the log
                time.sleep(1.0)
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
    logs = {exe: log.read_text(errors="replace") for exe, (_, log) in procs.items()}
    hung = set(procs) - set(codes)
    assert not hung, (f"still running 60 s after the first signal: {hung}; signals sent {sent}; "
                      f"logs: {({exe: logs[exe][-4000:] for exe in hung})}")
    bad = {exe: (rc, logs[exe][-2000:]) for exe, rc in codes.items() if rc != 0 or "Traceback" in logs[exe]}
    assert not bad, f"{case}: signals sent {sent}; exit codes {codes}; failing: {bad}"
    # The repeats did reach most processes during their shutdown (otherwise this proves nothing).
    assert sum(n >= 2 for n in sent.values()) >= len(procs) // 2, sent


def test_up_exits_0_and_stops_its_nodes_on_repeated_sigint(tmp_path):
    """`residual-control up` under `timeout`/systemd: repeated SIGINT only asks it to stop."""
    namespace = "/shutdown_up"
    proc = subprocess.Popen([str(BIN / "residual-control"), "up", "--namespace", namespace.strip("/"),
                             "--log-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    rclpy.init()
    probe = Probe(["shoulder", "elbow"], name="shutdown_up_probe", namespace=namespace)
    try:
        wanted = {"base_controller", "residual_policy", "residual_mixer"}
        up = probe.spin_until(
            lambda: wanted <= {n for n, ns in probe.get_node_names_and_namespaces() if ns == namespace}
            or proc.poll() is not None, 90.0)
        assert up and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "nodes not up"
    finally:
        probe.destroy_node()
        rclpy.shutdown()
    sent = 0
    deadline = time.monotonic() + 60.0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGINT)
            sent += 1
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = proc.stdout.read()
    pids = {int(line.split("(pid ")[1].split(")")[0]) for line in out.splitlines() if "(pid " in line}
    assert proc.returncode == 0 and "Traceback" not in out, (proc.returncode, sent, out[-3000:])
    assert len(pids) == 3 and sent >= 2, (pids, sent)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], \
            f"node process {pid} still running after `up` exited"
