"""Recording the running graph: residual_recorder in the closed loop (MuJoCo + every node as a process).

A short demo trial with ``--record`` writes a bag; plain ``rosbags`` (an
independent reader) opens it and lists the recorded topics with plausible
message counts and the custom metadata; ``read_episode`` turns it into
rows with finite q and command. Then the recorder alone: a stop signal
(SIGTERM) leaves a complete bag.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from residual_control.harness.closed_loop import load_params, mixer_config, node_params, recorder_spec
from residual_control.harness.demo import run_trial
from residual_control.logs import bag
from residual_control.logs.topics import META_JOINTS, META_MODEL_SHA256, META_PARAMS, TOPICS
from residual_control.paths import default_model, default_params_file, share_path
from support.processes import stop_group

pytestmark = pytest.mark.graph


def test_demo_trial_records_a_bag_that_rosbags_reads(tmp_path):
    from rosbags.rosbag2 import Reader

    params_file = str(default_params_file())
    params = load_params(params_file)
    joints = list(node_params(params, "residual_mixer")["joints"])
    model = str(default_model())
    args = argparse.Namespace(log_dir=str(tmp_path / "logs"), record=str(tmp_path / "bags"),
                              record_storage="mcap")
    # Half real time: a loaded machine slows the simulation instead of starving the policy.
    settings = dict(params_file=params_file, plant_file=str(share_path("config", "plants", "real.yaml")),
                    model_path=model, settle=2.0, duration=2.0, control_rate_hz=100.0, real_time_factor=0.5)
    result, _ = run_trial("residual", args, settings, joints, mixer_config(params))
    assert result["violations"] == 0, result["violation_breakdown"]
    path = tmp_path / "bags" / "residual"
    # Graph.stop stopped the recorder with SIGINT: the bag is closed (metadata.yaml written).
    assert (path / "metadata.yaml").is_file(), sorted(p.name for p in path.iterdir())

    with Reader(path) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        custom = reader.storage.metadata.custom
        read = sum(1 for _ in reader.messages())
    assert set(counts) == set(bag.topic_list()), counts
    assert all(types[bag.resolve_topic(t.name)] == t.msgtype for t in TOPICS)
    assert read == sum(counts.values())
    # 4 s of sim time at 100 Hz: at most about 400 of each per-period topic (the trial ends a little
    # after). The recorder discovers the new sim process while it already runs, so the first moments
    # may be missing, and a dropped sample is no failure: only a broad range is asserted.
    for topic in ("joint_states", "base_action", "residual_action", "commands", "residual_mixer/applied_residual"):
        assert 100 <= counts[bag.resolve_topic(topic)] <= 700, (topic, counts)
    assert counts["/expert_action"] == 0  # nobody publishes it in the demo
    assert counts["/residual_mixer/mode"] >= 1
    assert json.loads(custom[META_JOINTS]) == joints
    assert custom[META_MODEL_SHA256] == hashlib.sha256(open(model, "rb").read()).hexdigest()
    assert custom[META_PARAMS] == open(params_file, encoding="utf-8").read()

    ep = bag.read_episode(path, joints=joints, params_text=open(params_file, encoding="utf-8").read())
    ok = ep.complete()
    # The recorder matches each publisher on its own, after the graph already runs (a clean-clone CI run:
    # the first 102 of 405 periods incomplete). From the first complete period on, every period but a
    # dropped sample's is complete; that first one comes within the trial's first half.
    assert ok.any()
    first = int(np.argmax(ok))
    assert first <= 0.5 * ep.periods, (first, ep.periods)
    assert ok[first:].sum() >= 0.9 * (ep.periods - first), (ok[first:].sum(), ep.periods - first)
    assert np.all(np.isfinite(ep.q[ok])) and np.all(np.isfinite(ep.command[ok]))
    assert ep.control_dt == pytest.approx(0.01, rel=0.05)
    assert ep.t[-1] >= 4.0 - 0.5  # the bag holds the trial's end (settle + duration = 4 s sim time)
    # The command the mixer sent is its base action plus the applied residual (clipped to the limits).
    cfg = mixer_config(params)
    both = ok & np.all(np.isfinite(ep.a_base), axis=1) & np.all(np.isfinite(ep.applied_residual), axis=1)
    assert both.sum() >= 0.5 * (ep.periods - first)
    expected = np.clip(ep.a_base[both] + ep.applied_residual[both], cfg.command_min, cfg.command_max)
    np.testing.assert_allclose(ep.command[both], expected, atol=1e-9)
    assert ep.metadata["model_sha256"] == custom[META_MODEL_SHA256]


def test_recorder_closes_the_bag_on_sigterm(tmp_path):
    from residual_control.harness.graph import Graph

    out = tmp_path / "bag"
    spec = recorder_spec(str(out), str(default_params_file()), storage="sqlite3")
    with Graph([spec], log_dir=tmp_path / "logs") as graph:
        proc = graph["residual_recorder"]
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and "recording" not in proc.output():
            assert proc.alive(), proc.output()
            time.sleep(0.1)
        assert "recording" in proc.output(), proc.output()
        proc.signal(signal.SIGTERM)
        proc.popen.wait(timeout=30)
        assert proc.popen.returncode == 0, proc.output()
    with bag_reader(out) as reader:
        assert {c.topic for c in reader.connections} == set(bag.topic_list())
        assert reader.storage.metadata.custom[META_JOINTS] != "unknown"
    # No messages: the training side refuses it, naming the topics.
    with pytest.raises(bag.BagError, match="expected messages on the required topics"):
        bag.read_episode(out)


def bag_reader(path):
    from rosbags.rosbag2 import Reader

    return Reader(path)


def test_print_topics_lists_the_fully_qualified_names():
    cli = [sys.executable, "-m", "residual_control.cli"]
    out = subprocess.run(cli + ["record", "--print-topics", "--namespace", "arm1"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == bag.topic_list("arm1")


def test_up_record_writes_a_bag_closed_on_sigint(tmp_path):
    """``residual-control up --record DIR`` in a namespace: a probe plays the robot; SIGINT leaves a complete bag."""
    from pathlib import Path

    import rclpy

    from residual_control.harness.probe import Probe

    cli = Path(sys.executable).parent / "residual-control"
    proc = subprocess.Popen([str(cli), "up", "--namespace", "arm", "--record", str(tmp_path / "bags"),
                             "--storage", "sqlite3", "--log-dir", str(tmp_path / "logs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    rclpy.init()
    probe = Probe(["shoulder", "elbow"], name="record_probe", namespace="/arm")
    sent = 0
    try:
        def recorder_listens() -> bool:
            return any(i.node_name == "residual_recorder"
                       for i in probe.get_subscriptions_info_by_topic("/arm/residual_mixer/applied_residual"))

        assert probe.spin_until(recorder_listens, 60.0), "the recorder never subscribed"
        from std_msgs.msg import Float64MultiArray

        commands = []
        probe.create_subscription(Float64MultiArray, "/arm/commands", commands.append, 10)
        deadline = time.monotonic() + 60.0
        # At least 100 states, and on until the mixer answers (on a loaded machine the graph's own
        # discovery can take longer than 100 states): a bag of a graph that ran.
        while time.monotonic() < deadline and (sent < 100 or len(commands) < 10):
            probe.publish_reference([0.3, 0.5], [0.0, 0.0])
            probe.publish_state([0.3, 0.5], [0.0, 0.0])
            sent += 1
            probe.spin_for(0.02)
            assert proc.poll() is None, proc.stdout.read()
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        stop_group(proc, 60, strict=True)
    output = proc.stdout.read()
    assert proc.returncode == 0, output
    (path,) = list((tmp_path / "bags").iterdir())
    with bag_reader(path) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert set(counts) == set(bag.topic_list("arm")), counts
    # The states the probe sent after the recorder listened (reliable, a deep queue; a sample the
    # probe's depth-1 writer replaced under load is no failure).
    assert 0.8 * sent <= counts["/arm/joint_states"] <= sent, (counts, sent)
    assert counts["/arm/commands"] >= 1 and counts["/arm/residual_mixer/applied_residual"] >= 1, counts
    ep = bag.read_episode(path, joints=["shoulder", "elbow"])
    assert ep.metadata["storage"] == "sqlite3" and ep.metadata["robot"] != "unknown"
    assert np.all(np.isfinite(ep.q)) and ep.periods >= 1
