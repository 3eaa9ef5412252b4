"""A base controller outside the package: the unstamped base action's reading, its spec, `up --external-base`.

The live graph (an external node, residual_policy, residual_mixer) is test/ros/test_external_base.py;
the fault scenario external_base_died is in residual_control/harness/faults/external.py.
"""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from residual_control.cli import build_parser, up_specs
from residual_control.core.errors import ConfigError
from residual_control.core.mixer import Mode, mixer_from_params
from residual_control.core.params import FUSED_PARAMS, MIXER_PARAMS, POLICY_PARAMS, find_spec
from residual_control.nodes.conversions import BASE_ACTION_TYPES, base_action_msg_type, read_base_array
from residual_control.params_file import load, node_params
from residual_control.paths import default_params_file
from residual_control.robot.nominal import nominal_model

JOINTS = ("shoulder", "elbow")
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def _msg(data):
    return types.SimpleNamespace(data=list(data))


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=2))
def test_a_finite_array_of_one_value_per_joint_is_read_in_joints_order(data):
    np.testing.assert_array_equal(read_base_array(JOINTS, _msg(data)), np.asarray(data))


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, max_size=6).filter(lambda x: len(x) != 2))
def test_an_array_of_the_wrong_length_is_refused_naming_expected_and_found(data):
    with pytest.raises(ValueError) as exc:
        read_base_array(JOINTS, _msg(data))
    text = str(exc.value)
    assert "Float64MultiArray" in text and "expected 2 values" in text and f"found {len(data)}" in text
    assert "['shoulder', 'elbow']" in text


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_is_refused(bad):
    with pytest.raises(ValueError, match="expected finite values"):
        read_base_array(JOINTS, _msg([0.5, bad]))


def test_the_message_type_of_each_base_action_type():
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    assert base_action_msg_type("joint_state") is JointState
    assert base_action_msg_type("float64_multi_array") is Float64MultiArray
    with pytest.raises(ValueError, match="expected one of"):
        base_action_msg_type("float64")


def test_base_action_type_spec_of_policy_and_mixer():
    for specs in (MIXER_PARAMS, POLICY_PARAMS, FUSED_PARAMS):
        spec = find_spec(specs, "base_action_type")
        assert spec.default == "joint_state" and spec.read_only
        assert tuple(spec.choices) == BASE_ACTION_TYPES
        assert spec.validate("float64_multi_array") == "float64_multi_array"
    with pytest.raises(ConfigError, match="one of"):
        find_spec(MIXER_PARAMS, "base_action_type").validate("float64")


def _mixer():
    v = node_params(load(default_params_file()), "residual_mixer")
    v.update(recovery_hold_time=0.0, recovery_ramp_time=0.0)
    return mixer_from_params(v, nominal_model(v)), v


def test_the_mixer_core_takes_an_unstamped_array_as_the_node_hands_it_over():
    """The node passes (joints, data, receipt time, receipt time): the core needs nothing new."""
    mixer, v = _mixer()
    eps = np.asarray(v["residual_limit"], dtype=float)
    t = 100.0
    assert mixer.update_residual(list(JOINTS), [1.0, -100.0], t, t) == ""
    base = read_base_array(JOINTS, _msg([2.0, -3.0]))
    out = mixer.step(JOINTS, base, t, t)
    out = mixer.step(JOINTS, base, t + 0.01, t + 0.01)  # nominal after the (zero) hold
    expected = np.clip(base + np.clip([1.0, -100.0], -eps, eps), v["command_min"], v["command_max"])
    assert out.mode == Mode.NOMINAL, out.reason
    np.testing.assert_allclose(out.command, expected)
    # A refused array (the node hands the data to the core, which refuses it the same way): counted, base_fault.
    before = mixer.stats.rejected_bases
    out = mixer.step(JOINTS, [1.0, 2.0, 3.0], t + 0.02, t + 0.02)
    assert out.mode == Mode.BASE_FAULT and mixer.stats.rejected_bases == before + 1
    out = mixer.step(JOINTS, [math.nan, 2.0], t + 0.03, t + 0.03)
    assert out.mode == Mode.BASE_FAULT and mixer.stats.rejected_bases == before + 2
    assert out.command is None or np.all(np.isfinite(out.command))


def test_up_with_an_external_base_starts_policy_and_mixer_only(tmp_path):
    args = build_parser().parse_args(["up", "--external-base", "/my_controller/commands",
                                      "--command-topic", "/forward_effort_controller/commands"])
    specs = up_specs(args, str(default_params_file()), "")
    assert [s.executable for s in specs] == ["residual_policy", "residual_mixer"]
    for s in specs:
        assert s.remaps["base_action"] == "/my_controller/commands"
        assert s.remaps["commands"] == "/forward_effort_controller/commands"
        assert s.params["base_action_type"] == "float64_multi_array"
        cmd = s.command(tmp_path)
        assert "base_action:=/my_controller/commands" in cmd
    args = build_parser().parse_args(["up", "--external-base", "ext", "--base-action-type", "joint_state"])
    assert {s.params["base_action_type"] for s in up_specs(args, str(default_params_file()), "")} == {"joint_state"}
    plain = up_specs(build_parser().parse_args(["up"]), str(default_params_file()), "")
    assert [s.executable for s in plain] == ["base_controller", "residual_policy", "residual_mixer"]
    assert all("base_action" not in s.remaps and "base_action_type" not in s.params for s in plain)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--external-base", "x", "--base-action-type", "float64"])
