"""Launch arguments reach the nodes, with and without a namespace, whatever the params file holds.

launch and launch_ros are not installable here, so the launch files are
evaluated with small stand-ins for the launch classes they use (they record
what the launch file builds, nothing more: test/support/launch_eval.py), and each Node's ``parameters``
are turned into a command line the way launch_ros does it (a path:
``--params-file``; a dict: a file keyed ``/**``, or the node's full name when
a namespace was pushed, written with ``NamedTemporaryFile(prefix=
'launch_params_', delete=False)`` like launch_ros/actions/node.py). What the
node then gets is resolved by the real rcl and rclpy: a Node is created with
that command line and asked for its parameters. ``residual-control up`` is
checked the same way, from the command lines of runtime_specs, and live.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.node import Node as RclpyNode

from residual_control.launch_params import ParamsFolder, node_keys, node_params_files, override_key
from residual_control.harness.graph import NodeSpec, runtime_specs
from residual_control.robot.folder import load_robot

from support import ROOT, launch_eval
from support.launch_eval import install_standins

PARAMS_FILE = ROOT / "config" / "residual_control.yaml"
RUNTIME = ("base_controller", "residual_policy", "residual_mixer")


# --------------------------------------------------------------------------- stand-ins

@pytest.fixture
def evaluate(monkeypatch, tmp_path):
    """support.launch_eval.evaluate with the stand-in launch modules installed."""
    other_share = tmp_path / "other_share"
    other_share.mkdir()
    install_standins(monkeypatch, other_share)
    return launch_eval.evaluate


def shutdown(evaluation: launch_eval.Evaluation) -> None:
    evaluation.shutdown()


def launch_ros_args(kwargs: dict, namespace: str | None) -> list[str]:
    """Return the parameter part of the command line launch_ros builds for a Node (launch_ros/actions/node.py)."""
    name = kwargs["name"]
    fqn = (namespace.rstrip("/") + "/" + name) if namespace else None
    args = ["--ros-args"]
    for p in kwargs.get("parameters") or []:
        if isinstance(p, dict):
            with tempfile.NamedTemporaryFile(mode="w", prefix="launch_params_", delete=False) as h:
                yaml.dump({fqn if fqn else "/**": {"ros__parameters": p}}, h, default_flow_style=False)
            args += ["--params-file", h.name]
        else:
            assert os.path.isfile(str(p)), f"{name}: parameters file {p} does not exist"
            args += ["--params-file", str(p)]
    return args


def resolve(name: str, namespace: str | None, ros_args: list[str]) -> dict:
    """Return the parameters rcl and rclpy give a node named ``name`` in ``namespace`` started with ``ros_args``."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    try:
        node = RclpyNode(name, namespace=namespace or "/", context=ctx, cli_args=ros_args,
                         use_global_arguments=False, start_parameter_services=False, enable_rosout=False,
                         automatically_declare_parameters_from_overrides=True)
        try:
            return {n: p.value for n, p in node._parameters.items()}
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def node_params(evaluation: launch_eval.Evaluation) -> dict:
    """Return node name -> (namespace, resolved parameters) for every named node of a launch evaluation.

    The controller spawners have no name and no parameters.
    """
    out = {}
    for kwargs, ns in evaluation.nodes:
        if "name" not in kwargs:
            assert not kwargs.get("parameters"), kwargs
            continue
        assert kwargs["name"] not in out
        out[kwargs["name"]] = (ns or "/", resolve(kwargs["name"], ns, launch_ros_args(kwargs, ns)))
    return out


# A user's params file that sets, under every kind of key that matches the nodes, the values
# the launch arguments must override.
USER_PARAMS = {
    "/**": {"ros__parameters": {"joints": ["shoulder", "elbow"], "use_sim_time": False}},
    "/**/residual_policy": {"ros__parameters": {"model_path": "/user/wildcard.onnx"}},
    "residual_policy": {"ros__parameters": {"model_path": "/user/by_name.onnx", "use_sim_time": False,
                                            "perception_timeout": 0.25}},
    "/arm/residual_policy": {"ros__parameters": {"model_path": "/user/arm_fqn.onnx"}},
    "base_controller": {"ros__parameters": {"use_sim_time": False, "kp": [50.0, 30.0]}},
    "residual_mixer": {"ros__parameters": {"use_sim_time": False, "residual_gain": 0.5}},
    "mujoco_sim": {"ros__parameters": {"plant_file": "/user/plant.yaml", "publish_clock": False,
                                       "use_sim_time": True}},
    "perception": {"ros__parameters": {"plant_file": "/user/plant.yaml", "use_sim_time": False}},
    "reference_publisher": {"ros__parameters": {"use_sim_time": False}},
}


@pytest.fixture
def user_params(tmp_path):
    path = tmp_path / "user_params.yaml"
    path.write_text(yaml.safe_dump(USER_PARAMS, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.fixture
def private_tmp(monkeypatch, tmp_path):
    """Make the temporary folder this test's own: what a launch leaves there shows."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# --------------------------------------------------------------------------- launch files

@pytest.mark.parametrize("namespace", ["", "arm"])
def test_runtime_launch_arguments_win_over_the_shipped_params_file(evaluate, private_tmp, namespace):
    """The reported case: model_path:= without a namespace loaded the package's model instead."""
    ev = evaluate("residual_control.launch.py", {"params_file": str(PARAMS_FILE), "namespace": namespace,
                                                "model_path": "/some/model.onnx", "use_sim_time": "true"})
    got = node_params(ev)
    assert set(got) == set(RUNTIME)
    for name in RUNTIME:
        ns, params = got[name]
        assert ns == ("/arm" if namespace else "/")
        assert params["use_sim_time"] is True, name
        assert params["joints"] == ["shoulder", "elbow"], name
    assert got["residual_policy"][1]["model_path"] == "/some/model.onnx"
    # The file's node-name entries still apply.
    assert got["residual_mixer"][1]["residual_limit"] == [20.0, 8.0]
    assert got["base_controller"][1]["kp"] == [60.0, 40.0]
    shutdown(ev)
    assert sorted(os.listdir(private_tmp)) == []


@pytest.mark.parametrize("namespace,outer", [("", None), ("arm", None), ("", "/robot1"), ("arm", "/robot1")])
def test_runtime_launch_arguments_win_over_every_key_of_a_user_file(evaluate, private_tmp, user_params,
                                                                   namespace, outer):
    ev = evaluate("residual_control.launch.py", {"params_file": user_params, "namespace": namespace,
                                                "model_path": "/launch/arg.onnx", "use_sim_time": "true"},
                  outer_namespace=outer)
    got = node_params(ev)
    expected_ns = "/" + "/".join(p for p in ((outer or "").strip("/"), namespace) if p)
    for name in RUNTIME:
        ns, params = got[name]
        assert ns.rstrip("/") == expected_ns.rstrip("/")
        assert params["use_sim_time"] is True, (name, params)
    assert got["residual_policy"][1]["model_path"] == "/launch/arg.onnx"
    # The user's node-name entries reach the node in any namespace.
    assert got["residual_policy"][1]["perception_timeout"] == 0.25
    assert got["residual_mixer"][1]["residual_gain"] == 0.5
    assert got["base_controller"][1]["kp"] == [50.0, 30.0]
    shutdown(ev)
    assert sorted(os.listdir(private_tmp)) == []


@pytest.mark.parametrize("namespace", ["", "arm"])
def test_external_base_launch_reaches_policy_and_mixer(evaluate, private_tmp, user_params, namespace):
    """residual_external_base.launch.py: the two nodes only, base_action_type and model_path from the arguments."""
    from residual_control.core.params import POLICY_PARAMS, find_spec

    ev = evaluate("residual_external_base.launch.py", {"params_file": user_params, "namespace": namespace,
                                                       "model_path": "/launch/arg.onnx"})
    got = node_params(ev)
    assert set(got) == {"residual_policy", "residual_mixer"}
    spec = find_spec(POLICY_PARAMS, "base_action_type")
    for name in got:
        ns, params = got[name]
        assert ns == ("/arm" if namespace else "/")
        assert params["base_action_type"] == "float64_multi_array", (name, params)  # the launch default
        assert spec.validate(params["base_action_type"]) == "float64_multi_array"  # a value the nodes take
    assert got["residual_policy"][1]["model_path"] == "/launch/arg.onnx"
    # The user's node-name entries still apply.
    assert got["residual_mixer"][1]["residual_gain"] == 0.5
    assert got["residual_policy"][1]["perception_timeout"] == 0.25
    shutdown(ev)
    assert sorted(os.listdir(private_tmp)) == []
    ev = evaluate("residual_external_base.launch.py", {"params_file": user_params, "base_action_type": "joint_state"})
    got = node_params(ev)
    assert {n: p["base_action_type"] for n, (_, p) in got.items()} == {"residual_policy": "joint_state",
                                                                      "residual_mixer": "joint_state"}
    shutdown(ev)


def test_runtime_launch_without_model_path_keeps_the_params_file_value(evaluate, private_tmp, user_params):
    ev = evaluate("residual_control.launch.py", {"params_file": user_params, "model_path": ""})
    got = node_params(ev)
    assert got["residual_policy"][1]["model_path"] == "/user/by_name.onnx"
    assert got["residual_policy"][1]["use_sim_time"] is False  # the default launch argument
    shutdown(ev)


@pytest.mark.parametrize("namespace", ["", "arm"])
def test_sim_demo_launch_arguments_reach_every_node(evaluate, private_tmp, user_params, namespace):
    ev = evaluate("sim_demo.launch.py", {"params_file": user_params, "namespace": namespace,
                                        "plant_file": "/launch/plant.yaml", "model_path": "/launch/arg.onnx",
                                        "use_sim_time": "true"})
    got = node_params(ev)
    assert set(got) == {*RUNTIME, "mujoco_sim", "reference_publisher", "perception"}
    sim = got["mujoco_sim"][1]
    assert (sim["plant_file"], sim["publish_clock"], sim["use_sim_time"], sim["mode"]) == (
        "/launch/plant.yaml", True, False, "realtime")
    assert got["perception"][1]["plant_file"] == "/launch/plant.yaml"
    for name in ("perception", "reference_publisher", *RUNTIME):
        assert got[name][1]["use_sim_time"] is True, name
    assert got["residual_policy"][1]["model_path"] == "/launch/arg.onnx"
    # reference_publisher also gets the reference file (node-name keys there too).
    assert got["reference_publisher"][1]["trajectory_type"] == "sinusoid"
    shutdown(ev)
    assert sorted(os.listdir(private_tmp)) == []


@pytest.mark.parametrize("namespace", ["", "arm1"])
def test_hil_launch_arguments_reach_the_residual_and_plant_side_nodes(evaluate, private_tmp, user_params,
                                                                      namespace):
    ev = evaluate("hil_gazebo.launch.py", {"params_file": user_params, "namespace": namespace,
                                          "plant_file": "/launch/plant.yaml", "model_path": "/launch/arg.onnx"})
    got = node_params(ev)
    assert {*RUNTIME, "reference_publisher", "perception", "robot_state_publisher"} <= set(got)
    for name in ("perception", "reference_publisher", *RUNTIME):
        assert got[name][1]["use_sim_time"] is True, name
        assert got[name][0] == ("/" + namespace if namespace else "/"), name
    assert got["perception"][1]["plant_file"] == "/launch/plant.yaml"
    assert got["residual_policy"][1]["model_path"] == "/launch/arg.onnx"
    assert "<ros2_control" in got["robot_state_publisher"][1]["robot_description"]
    assert got["robot_state_publisher"][0] == "/"
    shutdown(ev)
    assert sorted(os.listdir(private_tmp)) == []


# --------------------------------------------------------------------------- the helper

def test_override_key_matches_any_namespace_and_is_new():
    assert override_key("residual_policy", set()) == "/**/residual_policy"
    assert override_key("residual_policy", {"/**/residual_policy"}) == "/**/**/residual_policy"
    assert override_key("x", {"/**/x", "/**/**/x"}) == "/**/**/**/x"
    assert node_keys({"a": {"ros__parameters": {}}, "ns": {"b": {"ros__parameters": {}}},
                      "/**": {"c": {"ros__parameters": {}}}}) == {"a", "ns/b", "/**/c"}


def test_node_params_files_pass_the_user_file_as_is_without_namespace(tmp_path, user_params):
    files = node_params_files([user_params], "residual_policy", {}, tmp_path, namespaced=False)
    assert files == [user_params]
    files = node_params_files([user_params], "residual_policy", {"model_path": "/x.onnx"}, tmp_path,
                              namespaced=False)
    assert files[0] == user_params and Path(files[1]).parent == tmp_path
    assert yaml.safe_load(Path(files[1]).read_text()) == {
        "/**/**/residual_policy": {"ros__parameters": {"model_path": "/x.onnx"}}}
    # A file ROS 2 would refuse is passed on for the node to report (nothing to re-key without a namespace).
    assert node_params_files([str(tmp_path / "missing.yaml")], "n", {}, tmp_path, False) == [
        str(tmp_path / "missing.yaml")]
    with pytest.raises(FileNotFoundError, match="expected an existing file"):
        node_params_files([str(tmp_path / "missing.yaml")], "n", {}, tmp_path, True)


def test_params_folder_cleanup_removes_everything(user_params):
    folder = ParamsFolder()
    # A re-keyed copy of the user's file (node-name keys, in a namespace) and the overrides.
    node_params_files([user_params], "residual_policy", {"use_sim_time": True}, folder, True)
    assert len(os.listdir(folder.path)) == 2
    folder.cleanup()
    folder.cleanup()  # idempotent
    assert not os.path.exists(folder.path)


# --------------------------------------------------------------------------- residual-control up

def _params_args(cmd: list[str]) -> list[str]:
    """Return the --params-file arguments of a node command line (the namespace is given to resolve())."""
    out = ["--ros-args"]
    for i, a in enumerate(cmd):
        if a == "--params-file":
            out += [a, cmd[i + 1]]
    return out


@pytest.mark.parametrize("namespace", ["", "arm"])
def test_up_arguments_win_over_every_key_of_a_user_file(tmp_path, private_tmp, user_params, namespace):
    specs = runtime_specs(user_params, namespace, "/up/arg.onnx", True)
    logs = tmp_path / "logs"
    logs.mkdir()
    got = {}
    for spec in specs:
        cmd = spec.command(logs)
        if namespace:
            assert f"__ns:=/{namespace}" in cmd
        got[spec.executable] = resolve(spec.executable, "/" + namespace if namespace else None, _params_args(cmd))
    for name in RUNTIME:
        assert got[name]["use_sim_time"] is True, name
    assert got["residual_policy"]["model_path"] == "/up/arg.onnx"
    assert got["residual_policy"]["perception_timeout"] == 0.25
    assert got["residual_mixer"]["residual_gain"] == 0.5
    assert sorted(os.listdir(private_tmp)) == [], "runtime_specs left files in the temporary folder"


def test_node_spec_refuses_to_write_params_without_a_folder():
    with pytest.raises(ValueError, match="expected a folder"):
        NodeSpec("residual_policy", [str(PARAMS_FILE)], {"use_sim_time": True}).command()


@pytest.mark.parametrize("launch_file", ["sim_demo.launch.py", "residual_control.launch.py"])
def test_robot_argument_selects_the_robot_folders_files(evaluate, private_tmp, user_params, tmp_path, launch_file):
    """robot:=DIR: the folder's params file, reference, plant and model reach the nodes."""
    data = yaml.safe_load((ROOT / "robots" / "planar2" / "robot.yaml").read_text())
    spec = load_robot()
    for key in ("description", "reference", "model"):
        data[key] = str(getattr(spec, key))
    data["params"] = user_params
    data["plant"] = str(ROOT / "config" / "plants" / "mid.yaml")
    folder = tmp_path / "my_robot"
    folder.mkdir()
    (folder / "robot.yaml").write_text(yaml.safe_dump(data))
    ev = evaluate(launch_file, {"robot": str(folder), "use_sim_time": "true"})
    got = node_params(ev)
    assert got["residual_policy"][1]["model_path"] == str(spec.model)
    assert got["base_controller"][1]["kp"] == [50.0, 30.0]  # the robot's params file (user_params)
    if launch_file == "sim_demo.launch.py":
        assert got["mujoco_sim"][1]["plant_file"] == data["plant"]
        assert got["perception"][1]["plant_file"] == data["plant"]
        assert got["reference_publisher"][1]["trajectory_type"] == "sinusoid"
    shutdown(ev)
    assert sorted(os.listdir(private_tmp)) == []
