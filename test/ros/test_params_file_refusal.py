"""Params-file validation at start.

Every runtime node, given a bad value, exits 2 with a message naming what was expected and what was
found (the in-process input handling: test/unit/test_input_handling.py).
"""
from __future__ import annotations

import math
import time

import pytest
import yaml

from residual_control.harness.graph import Graph, NodeSpec
from residual_control.paths import default_params_file

from support.messages import says_expected_found

pytestmark = pytest.mark.graph


DELETE = object()  # a change that removes the key: a robot-specific value left out


def _params(node: str, **changes) -> dict:
    with open(default_params_file()) as f:
        params = yaml.safe_load(f)
    section = params.setdefault(node, {}).setdefault("ros__parameters", {})
    for key, value in changes.items():
        if value is DELETE:
            for entry in params.values():  # from the node's section and from /**
                entry["ros__parameters"].pop(key, None)
        else:
            section[key] = value
    return params


BAD_PARAMS = [
    # (case, node, changes, words the message must contain)
    ("negative_limit", "residual_mixer", {"residual_limit": [-1.0, 6.0]}, ["residual_limit", ">= 0", "-1.0"]),
    ("wrong_length", "residual_mixer", {"residual_limit": [1.0]}, ["residual_limit", "2 values", "found 1"]),
    ("nan_gain", "residual_mixer", {"residual_gain": math.nan}, ["residual_gain", "nan"]),
    ("timeout_out_of_range", "residual_mixer", {"residual_timeout": -1.0}, ["residual_timeout", "-1.0"]),
    ("period_type", "residual_mixer", {"diagnostics_period": "fast"}, ["diagnostics_period", "fast"]),
    ("path_type", "residual_policy", {"model_path": 5}, ["model_path", "5"]),
    ("unknown_behavior", "residual_mixer", {"base_stale_behavior": "explode"}, ["base_stale_behavior", "explode"]),
    ("unknown_controller", "base_controller", {"controller_type": "lqr"}, ["controller_type", "lqr", "pid"]),
    ("nan_gain_base", "base_controller", {"kp": [math.nan, 1.0]}, ["kp", "nan"]),
    ("kp_wrong_length", "base_controller", {"kp": [1.0, 2.0, 3.0]}, ["kp", "2 values", "found 3"]),
    ("policy_limit_mismatch", "residual_policy", {"residual_limit": [1.0, 6.0]}, ["residual_limit", "[1.0, 6.0]"]),
    # Robot-specific values have no default: left out of the robot's params file, the node refuses to start.
    ("no_joints", "residual_mixer", {"joints": DELETE}, ["joints", "robot's params file", "found none"]),
    ("no_kp", "base_controller", {"kp": DELETE}, ["kp", "robot's params file", "found none"]),
    ("no_damp_kd", "residual_mixer", {"damp_kd": DELETE}, ["damp_kd", "robot's params file", "found none"]),
    ("no_policy_limit", "residual_policy", {"residual_limit": DELETE},
     ["residual_limit", "robot's params file", "found none"]),
    ("policy_missing_model", "residual_policy", {"model_path": "/nonexistent/model.onnx"},
     ["model_path", "/nonexistent/model.onnx"]),
]


def test_bad_params_file_exits_2_naming_expected_and_found(tmp_path):
    specs = []
    for case, node, changes, _ in BAD_PARAMS:
        path = tmp_path / f"{case}.yaml"
        path.write_text(yaml.safe_dump(_params(node, **changes)))
        specs.append((case, NodeSpec(node, [str(path)]), path))
    graphs = {}
    try:
        for case, spec, _ in specs:  # one Graph per case: all start at once, in parallel
            graphs[case] = Graph([spec], log_dir=tmp_path / "logs" / case)
        failures = []
        deadline = time.monotonic() + 120.0
        for case, node, changes, words in BAD_PARAMS:
            proc = graphs[case][node]
            try:
                rc = proc.popen.wait(timeout=max(deadline - time.monotonic(), 1.0))
            except Exception:
                failures.append(f"{case}: still running (expected exit status 2)")
                continue
            out = proc.output()
            fatal = "\n".join(line for line in out.splitlines() if "FATAL" in line)
            if rc != 2:
                failures.append(f"{case}: exit status {rc}, expected 2; log: {out[-600:]}")
            elif not says_expected_found(fatal):
                failures.append(f"{case}: message does not name expected/found: {fatal!r}")
            elif not all(w.lower() in fatal.lower() for w in words):
                failures.append(f"{case}: message {fatal!r} does not mention {words}")
        assert not failures, "\n".join(failures)
    finally:
        for g in graphs.values():
            g.stop()


@pytest.mark.parametrize("controller, starts", [("pd_gravity", True), ("computed_torque", True), ("pid", False)])
def test_the_pid_gains_are_needed_only_by_a_pid_base(tmp_path, controller, starts):
    """The PID's own ki and integral_limit left out of a params file: only a pid base refuses to start."""
    import rclpy

    from residual_control.core.errors import ConfigError
    from residual_control.nodes.base_controller import BaseControllerNode

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_params("base_controller", controller_type=controller, ki=DELETE,
                                           integral_limit=DELETE)))
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        if starts:
            node = BaseControllerNode(context=context)
            assert node.controller.kind == controller
            node.destroy_node()
        else:
            with pytest.raises(ConfigError, match="parameter 'ki': expected a value from the robot's params file"):
                BaseControllerNode(context=context)
    finally:
        rclpy.shutdown(context=context)
