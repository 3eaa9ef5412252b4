"""The measurement harness (faults, bench, soak, safe_stop) derives its numbers from the robot.

Joint names, the constant residuals of the synthetic models, the rogue values of the fault matrix,
the start pose and the probe's reference all come from the robot folder (joints, residual limits,
home, workspace); nothing of the built-in arm is left in these modules. The built-in arm keeps its
numbers: (3.0, -1.5) for its limits [20, 8], 4 kg out of the envelope, home [0.3, 1.2].
"""
from __future__ import annotations

import ast
import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from residual_control.harness import faults
from residual_control.harness.faults import relay
from residual_control.robot.folder import load_robot

from support import ROOT

HARNESS = ["residual_control/harness/faults/" + f for f in
           ("common.py", "matrix.py", "relay.py", "policy.py", "probe_driven.py", "spawn.py", "clock.py",
            "loop.py", "__init__.py")] + ["residual_control/harness/" + f for f in ("bench.py", "soak.py",
                                                                                    "safe_stop.py")]


def _code_constants(tree):
    """Return the constants of the code (docstrings left out) and the literal lists/tuples of numbers."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and id(n) not in docs]
    numbers = [tuple(e.value for e in n.elts) for n in ast.walk(tree) if isinstance(n, (ast.List, ast.Tuple))
               and n.elts and all(isinstance(e, ast.Constant) and isinstance(e.value, float) for e in n.elts)]
    return strings, numbers


@pytest.mark.parametrize("path", HARNESS)
def test_no_built_in_arm_names_or_numbers_in_the_harness_code(path):
    tree = ast.parse((ROOT / path).read_text())
    strings, numbers = _code_constants(tree)
    for text in strings:
        for name in ("shoulder", "elbow", "wrist"):
            assert not re.search(rf"\b{name}\b", text), f"{path}: the built-in arm's joint name in {text!r}"
    for pose in ((0.3, 1.2), (0.4, 1.0), (20.0, 8.0), (3.0, -1.5), (1.0, 0.5), (0.5, -0.25)):
        assert pose not in numbers, f"{path}: the built-in arm's {pose}"
    names = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert not names & {"CONST_RESIDUAL", "JOINTS", "J", "ENVELOPE_FAULT_PAYLOAD"}, (path, names)


def test_the_built_in_arm_keeps_its_numbers():
    arm = load_robot()
    assert faults.constant_residual(arm.residual_limit) == (3.0, -1.5)
    assert faults.second_residual(arm.residual_limit) == (1.0, 0.5)
    assert faults.envelope_fault_payload(arm.randomization["payload_mass"]) == 4.0
    np.testing.assert_allclose(faults.reference_near(arm.home, arm.workspace_lower, arm.workspace_upper), [0.4, 1.0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 500.0), min_size=1, max_size=12))
def test_constant_residual_is_inside_every_clamp_and_tells_the_joints_apart(limit):
    da = np.array(faults.constant_residual(limit))
    lim = np.array(limit)
    assert da.shape == lim.shape
    assert np.all(np.abs(da) <= 0.375 * lim + 1e-12)  # well inside the clamp: g observable as applied / da
    assert np.all(np.abs(da) >= 0.375 * lim.min() / 2 - 1e-12)  # and not vanishing
    assert np.all(np.sign(da[::2]) > 0) and np.all(np.sign(da[1::2]) < 0)
    assert len(set(np.round(np.abs(da), 12))) == len(da)  # a swapped joint shows
    d2 = np.array(faults.second_residual(limit))
    assert np.all(d2 > 0) and not np.allclose(d2, da)


@pytest.mark.parametrize("bad", [[], [1.0, 0.0], [1.0, -2.0], [math.nan], [[1.0, 2.0]]])
def test_constant_residual_refuses_bad_limits(bad):
    with pytest.raises(ValueError, match="expected positive finite limits"):
        faults.constant_residual(bad)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["not_a_joint", "not_a_joint_", "not_a_joint__", "j1", "a"]), max_size=5))
def test_unknown_joint_never_collides(joints):
    assert faults.unknown_joint(joints) not in joints


def test_rogue_residuals_are_sized_for_the_robot():
    J, limit = ["base_yaw", "not_a_joint", "lift"], [10.0, 4.0, 2.0]  # a joint named as the unknown-name stem
    da = list(faults.constant_residual(limit))
    content = {name: (fn(J, da), fb) for name, _, fn, fb in relay._CONTENT}
    (names, values), fb = content["residual_nan"]
    assert names == J and math.isnan(values[0]) and len(values) == 3 and fb
    (names, values), _ = content["residual_inf"]
    assert names == J and all(math.isinf(v) for v in values)
    (names, values), fb = content["residual_huge"]
    assert names == J and all(abs(v) == 1e300 for v in values) and not fb
    (names, values), _ = content["residual_wrong_length"]
    assert names == J and len(values) == 4
    (names, values), _ = content["residual_unknown_name"]
    assert len(names) == 3 and set(names) - set(J) and len(values) == 3
    (names, values), _ = content["residual_missing_name"]
    assert names == J[:2] and len(values) == 2
    (names, values), _ = content["residual_duplicate_name"]
    assert len(names) == 3 and len(set(names)) == 2 and set(names) <= set(J)
    (names, values), fb = content["residual_shuffled_names"]
    assert dict(zip(names, values)) == dict(zip(J, da)) and names != J and not fb


def test_invalid_parameters_are_sized_for_the_robot():
    from residual_control import params_file

    for robot in (load_robot(), load_robot("fer")):
        params = params_file.load(robot.params)
        n = robot.dof
        mixer = params_file.node_params(params, "residual_mixer")
        inv = faults.invalid_parameters(list(robot.joints), params)
        assert set(inv) == set(faults.INVALID_NODES)
        for node, entries in inv.items():
            for name, value in entries:
                if name == "joints":
                    assert len(value) == n and not set(value) & set(robot.joints), (node, value)
        lists = {(name, len(v)) for name, v in inv["residual_mixer"] if isinstance(v, list) and name != "joints"}
        assert ("residual_limit", n) in lists and ("residual_limit", n - 1) in lists
        beyond = [v for name, v in inv["residual_mixer"] if name == "residual_limit_max"][0]
        assert min(beyond) > max(mixer["residual_limit_max"])
        cmin = [v for name, v in inv["residual_mixer"] if name == "command_min"][0]
        assert min(cmin) > max(mixer["command_max"])  # command_min above command_max: invalid


def test_the_fault_context_is_the_robots(tmp_path):
    fer = load_robot("fer")
    ctx = faults.Context(tmp_path, None, lambda m: None, "fer")
    assert ctx.joints == list(fer.joints) and ctx.params_file == str(fer.params)
    assert ctx.plant_file == str(fer.plant) and ctx.model == (None if fer.model is None else str(fer.model))
    np.testing.assert_allclose(ctx.home, fer.home)
    assert ctx.const_residual == faults.constant_residual(fer.residual_limit)
    assert len(ctx.const_residual) == 7
    (tmp_path / "none").mkdir()
    assert faults.Context(tmp_path / "none", None, lambda m: None, dataclasses.replace(fer, model=None)).model is None
    (tmp_path / "arm").mkdir()
    arm = faults.Context(tmp_path / "arm", None, lambda m: None)
    assert arm.joints == list(load_robot().joints) and Path(arm.model) == load_robot().model


def test_learn_bench_takes_the_robots_params_file():
    import argparse

    from residual_control.training import benchmark as lb
    from residual_control.training.cli import add_subcommands, robot_params_file
    from residual_control.training.common.config import load_train_config

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["learn-bench", "--robot", "fer", "--skip-rl", "--out", "x"])
    assert args.robot == "fer"
    fer = robot_params_file(args.robot)
    assert (ROOT / fer).resolve() == Path(load_robot("fer").params).resolve()
    for config, schema in (("config/train_bc.yaml", "bc"), ("config/train_rl.yaml", "rl")):
        assert load_train_config(config, lb._overrides(fer), schema=schema).values.params_file == fer
        assert load_train_config(config, lb._overrides(None), schema=schema).values.params_file == \
            "config/residual_control.yaml"
    with pytest.raises(ValueError, match="robot"):
        robot_params_file(str(ROOT / "config"))  # a folder without robot.yaml


def test_the_soak_and_bench_numbers_are_the_robots():
    from residual_control.harness import bench, soak

    assert soak.model_bias([20.0, 8.0]) == (0.5, -0.25)
    bias = np.array(soak.model_bias(load_robot("fer").residual_limit))
    assert bias.shape == (7,) and np.all(np.abs(bias) <= 0.5)
    assert bench.seq_scale(60.0) == bench.SEQ_SCALE  # the built-in arm: unchanged
    small = bench.seq_scale(5.0)
    assert (bench.SEQ_MOD - 1) * small < 5.0
    for robot in (load_robot(), load_robot("fer")):
        inputs = bench.Inputs.of(robot, str(robot.params))
        assert inputs.joints == robot.joints and len(inputs.q) == len(inputs.q_ref) == robot.dof
        assert np.all(np.asarray(inputs.q_ref) >= robot.workspace_lower)
        assert np.all(np.asarray(inputs.q_ref) <= robot.workspace_upper)
    with pytest.raises(ValueError, match="expected the joints of robot"):
        bench.Inputs.of(load_robot("fer"), str(load_robot().params))


@pytest.mark.parametrize("name", ["planar2", "fer"])
def test_the_probes_base_action_stays_within_the_residual_bound_of_the_safe_stop(name):
    """The probe's base action: kp (q_ref - home) <= g eps.

    A damp command (gravity at home) next to a base action is then within the bound.
    """
    from residual_control import params_file

    robot = load_robot(name)
    params = params_file.load(robot.params)
    q_ref = faults.reference_near(robot.home, robot.workspace_lower, robot.workspace_upper, faults.step_bound(params))
    kp = np.array(params_file.node_params(params, "base_controller")["kp"])
    mixer = params_file.node_params(params, "residual_mixer")
    eps = mixer["residual_gain"] * np.array(mixer["residual_limit"])
    assert np.all(np.abs(kp * (q_ref - robot.home)) <= eps + 1e-9)
    assert np.all(np.abs(q_ref - robot.home) > 0)  # a reference to track, not the home itself
    if name == "planar2":
        np.testing.assert_allclose(q_ref, [0.4, 1.0])


def test_step_bound_halves_only_the_steps_beyond_it():
    q = faults.reference_near([0.0, 0.0, 0.0], [-1, -1, -1], [1, 1, 1], [0.3, 0.05, np.inf])
    np.testing.assert_allclose(q, [0.1, -0.025, 0.1])
