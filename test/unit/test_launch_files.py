"""Checks of the launch files and the Gazebo (gz-sim) HIL configuration.

launch, launch_ros, ros_gz and gz_ros2_control are not installable in this
environment, so nothing here starts a node or Gazebo. The launch files are
parsed with ``ast`` (entry point, docstring, imports) and evaluated with the
stand-ins of test/support/launch_eval.py, which record the actions a launch
file builds (its DeclareLaunchArgument, Node, IncludeLaunchDescription ...)
at its default arguments; the XML/YAML files are read with xml.etree / PyYAML.
What is checked:

* each launch file parses and defines ``generate_launch_description``, imports
  only known modules (residual_control.launch_params, which builds the shared
  actions, imports only known launch modules), and documents every launch argument;
* the launch arguments the brief requires are declared, and the arguments
  passed to included launch files are declared by them;
* every (package, executable) a Node uses is known, residual_control
  executables are console_scripts of setup.py (when setup.py exists), node
  names equal the executables and the params-file keys name started nodes;
* remapped topic names are topics of that node; the HIL remaps point at the
  forward_command_controller topic and the joint_state_broadcaster topic;
* package-share files the launch files reference exist in the source tree and
  are installed by setup.py's data_files (when setup.py exists);
* the world SDF, the controllers YAML, the bridge YAML and the URDF with the
  injected gz_ros2_control blocks are well-formed and consistent with the
  params file `joints`.
"""
from __future__ import annotations

import ast
import os
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from residual_control.hil import (
    GZ_CONTROL_PLUGIN_FILENAME,
    GZ_CONTROL_PLUGIN_NAME,
    GZ_SYSTEM_PLUGIN,
    inject_ros2_control,
    ros2_control_joints,
    scope_params_to_any_namespace,
)

from support import ROOT, launch_eval
from support.launch_eval import LAUNCH_DIR, LAUNCH_FILES, declared_arguments, install_standins

PARAMS_FILE = ROOT / "config" / "residual_control.yaml"
CONTROLLERS_FILE = ROOT / "config" / "gazebo_controllers.yaml"
BRIDGE_FILE = ROOT / "config" / "gazebo_bridge.yaml"
WORLD_FILE = ROOT / "description" / "gazebo" / "arm_world.sdf"
URDF_FILE = ROOT / "description" / "arm.urdf"
DOC_FILE = ROOT / "docs" / "gazebo_hil.md"
SETUP_PY = ROOT / "setup.py"

PACKAGE = "residual_control"
HELPER_FILE = ROOT / PACKAGE / "launch_params.py"

EXPECTED_EXECUTABLES = {
    "base_controller",
    "residual_policy",
    "residual_mixer",
    "mujoco_sim",
    "reference_publisher",
    "perception",
    "residual_recorder",  # record:=true
}
# (package, executable) pairs from other packages the launch files may start.
EXTERNAL_EXECUTABLES = {
    ("ros_gz_bridge", "parameter_bridge"),
    ("ros_gz_sim", "create"),
    ("controller_manager", "spawner"),
    ("robot_state_publisher", "robot_state_publisher"),
}
# Relative topic names of each node (published and subscribed), from the design.
NODE_TOPICS = {
    "base_controller": {"joint_states", "reference", "base_action"},
    "residual_policy": {"joint_states", "reference", "base_action", "perception",
                        "residual_action"},
    "residual_mixer": {"base_action", "residual_action", "joint_states", "commands", "/diagnostics",
                       "~/mode", "~/applied_residual"},
    "mujoco_sim": {"joint_states", "/clock", "commands"},
    "reference_publisher": {"reference"},
    "perception": {"perception"},
}
ALLOWED_IMPORTS = {"os", "yaml", "ament_index_python.packages", "launch", "launch.actions",
                   "launch.substitutions", "launch.launch_description_sources",
                   "launch.event_handlers", "launch_ros.actions", "residual_control.hil",
                   "residual_control.launch_params"}
BRIDGE_DIRECTIONS = {"BIDIRECTIONAL", "GZ_TO_ROS", "ROS_TO_GZ"}
BRIDGE_KEYS = {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"}


# --------------------------------------------------------------------------- helpers

def _tree(name: str) -> ast.Module:
    path = LAUNCH_DIR / name
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.fixture
def standins(monkeypatch, tmp_path):
    """Install the stand-in launch modules (test/support/launch_eval.py) in sys.modules."""
    other_share = tmp_path / "other_share"
    other_share.mkdir()
    install_standins(monkeypatch, other_share)


@pytest.fixture
def evaluated(standins):
    """Launch file name -> its evaluation at the default arguments (generated files removed after)."""
    done: dict = {}

    def get(name: str) -> launch_eval.Evaluation:
        if name not in done:
            done[name] = launch_eval.evaluate(name)
        return done[name]

    yield get
    for evaluation in done.values():
        evaluation.shutdown()


def _nodes(evaluation: launch_eval.Evaluation) -> list:
    """Return the Node actions as dicts: package, executable, name, remappings [(from, to)], arguments."""
    out = []
    for kwargs, _ in evaluation.nodes:
        remaps = list(kwargs.get("remappings") or [])
        for remap in remaps:
            assert isinstance(remap, tuple) and len(remap) == 2, (
                f"{kwargs.get('executable')}: remappings entries must be (from, to) tuples, found {remap!r}")
        out.append({
            "package": kwargs.get("package"),
            "executable": kwargs.get("executable"),
            "name": kwargs.get("name"),
            "remappings": remaps,
            "arguments": kwargs.get("arguments"),
        })
    return out


def _runtime_includes(evaluation: launch_eval.Evaluation) -> list:
    """Return the launch arguments of each inclusion of this package's residual_control.launch.py."""
    return [args for path, args in evaluation.includes
            if path == LAUNCH_DIR / "residual_control.launch.py"]


def _module_constant(name: str, constant: str) -> str:
    """Return a module-level constant of a launch file (stand-ins installed)."""
    return getattr(launch_eval.load_launch(LAUNCH_DIR / name), constant)


def _func_name(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def _params() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))


def _params_joints() -> list:
    return list(_params()["/**"]["ros__parameters"]["joints"])


def _console_scripts() -> set | None:
    if not SETUP_PY.exists():
        return None
    text = SETUP_PY.read_text(encoding="utf-8")
    return set(re.findall(r"""["']\s*([A-Za-z_][\w\-]*)\s*=\s*[\w.]+\s*:\s*\w+""", text))


def _wait_for_urdf(timeout_s: float = 0.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while not URDF_FILE.exists() and time.monotonic() < deadline:
        time.sleep(1.0)
    if not URDF_FILE.exists():
        pytest.skip("description/arm.urdf does not exist yet")
    return URDF_FILE


# --------------------------------------------------------------------------- launch files

@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_parses_and_defines_entry_point(name):
    tree = _tree(name)
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    assert ast.get_docstring(tree), f"{name}: expected a module docstring (usage)"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_imports_only_known_modules(name):
    tree = _tree(name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module]
        else:
            continue
        for mod in mods:
            assert mod in ALLOWED_IMPORTS, f"{name}: unexpected import {mod}"
    import importlib
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.startswith("residual_control."):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{name}: {node.module}.{alias.name} missing"


def test_launch_helper_imports_only_known_launch_modules():
    """residual_control.launch_params builds the launch files' shared actions (imports inside its functions)."""
    found = set()
    for node in ast.walk(ast.parse(HELPER_FILE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "launch", "launch_ros", "ament_index_python"):
            assert node.module in ALLOWED_IMPORTS, f"launch_params.py: unexpected import {node.module}"
            found.add(node.module)
    assert {"launch", "launch.actions", "launch_ros.actions"} <= found


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_arguments_documented(name, standins):
    args = declared_arguments(name)
    assert args, f"{name}: expected launch arguments"
    for arg, (default, desc) in args.items():
        assert isinstance(default, str), f"{name}: launch argument '{arg}' has no default string ({default!r})"
        assert isinstance(desc, str) and desc.strip(), f"{name}: launch argument '{arg}' has no description"


def test_required_launch_arguments(standins):
    assert {"params_file", "namespace", "model_path", "use_sim_time", "command_topic",
            "joint_states_topic"} <= set(declared_arguments("residual_control.launch.py"))
    assert {"plant_file", "params_file", "namespace", "model_path", "use_sim_time"} <= set(
        declared_arguments("sim_demo.launch.py"))
    assert {"world", "urdf_file", "controllers_file", "bridge_file", "params_file",
            "namespace", "model_path", "gui"} <= set(declared_arguments("hil_gazebo.launch.py"))


@pytest.mark.parametrize("name", ["sim_demo.launch.py", "hil_gazebo.launch.py"])
def test_included_launch_arguments_are_declared(name, evaluated):
    includes = _runtime_includes(evaluated(name))
    assert includes, f"{name}: expected to include residual_control.launch.py"
    declared = set(declared_arguments("residual_control.launch.py"))
    for args in includes:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in args.items()), (
            f"{name}: launch arguments must be strings: {args}")
        assert set(args) <= declared, f"{name}: undeclared {set(args) - declared}"
        assert args.get("use_sim_time") == "true", f"{name}: the runtime graph must run on /clock: {args}"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_executables_known(name, evaluated):
    nodes = _nodes(evaluated(name))
    assert nodes, f"{name}: expected Node actions"
    scripts = _console_scripts()
    for node in nodes:
        pkg, exe = node["package"], node["executable"]
        assert isinstance(pkg, str) and isinstance(exe, str) and pkg and exe, (
            f"{name}: package/executable must be strings: {node}")
        if pkg == PACKAGE:
            assert exe in EXPECTED_EXECUTABLES, f"{name}: unknown executable {exe}"
            if scripts is not None:
                assert exe in scripts, f"{name}: {exe} is not a console_script of setup.py"
            assert node["name"] == exe, f"{name}: node name of {exe} should equal the executable"
        else:
            assert (pkg, exe) in EXTERNAL_EXECUTABLES, f"{name}: unknown {pkg}/{exe}"


def test_setup_py_console_scripts_cover_expected_executables():
    scripts = _console_scripts()
    if scripts is None:
        pytest.skip("setup.py not written yet")
    missing = EXPECTED_EXECUTABLES - scripts
    assert not missing, f"setup.py console_scripts lack {sorted(missing)}"


def test_runtime_node_names_match_params_file(evaluated):
    started = {n["name"] for name in LAUNCH_FILES for n in _nodes(evaluated(name))}
    # Every node-name section of the params file reaches a node the launch files start.
    sections = {k for k in _params() if not str(k).startswith("/")}
    assert sections <= started, f"params file sections for nodes no launch file starts: {sections - started}"
    runtime = _nodes(evaluated("residual_control.launch.py"))
    assert {n["executable"] for n in runtime} == {n["name"] for n in runtime} == {
        "base_controller", "residual_policy", "residual_mixer"}


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_remapped_topics_belong_to_the_node(name, evaluated):
    for node in _nodes(evaluated(name)):
        if node["package"] != PACKAGE:
            continue
        for source, _ in node["remappings"]:
            assert isinstance(source, str), f"{name}: {node['executable']}: remap source must be a string"
            assert source in NODE_TOPICS[node["executable"]], (
                f"{name}: {node['executable']} has no topic '{source}' to remap")


def test_runtime_remaps_cover_plant_topics(evaluated):
    remaps = {n["executable"]: {s for s, _ in n["remappings"]}
              for n in _nodes(evaluated("residual_control.launch.py"))}
    assert "commands" in remaps["residual_mixer"]
    assert "joint_states" in remaps["base_controller"]
    assert "joint_states" in remaps["residual_policy"]
    assert "joint_states" in remaps["residual_mixer"]  # damp reads the robot's joint states


def test_hil_remaps_point_at_ros2_control_topics(evaluated):
    evaluation = evaluated("hil_gazebo.launch.py")
    controllers = yaml.safe_load(CONTROLLERS_FILE.read_text(encoding="utf-8"))
    (args,) = _runtime_includes(evaluation)
    controller = _module_constant("hil_gazebo.launch.py", "EFFORT_CONTROLLER")
    assert controller in controllers["controller_manager"]["ros__parameters"]
    assert args["command_topic"] == f"/{controller}/commands" == "/effort_controller/commands"
    assert args["joint_states_topic"] == "/joint_states"
    # ... and the included graph remaps onto them.
    remaps = {n["executable"]: dict(n["remappings"]) for n in _nodes(evaluation) if n["package"] == PACKAGE}
    assert remaps["residual_mixer"] == {"commands": "/effort_controller/commands", "joint_states": "/joint_states"}
    for executable in ("base_controller", "residual_policy"):
        assert remaps[executable] == {"joint_states": "/joint_states"}


def test_hil_spawns_the_controllers_of_the_yaml(evaluated):
    evaluation = evaluated("hil_gazebo.launch.py")
    cm = yaml.safe_load(CONTROLLERS_FILE.read_text(encoding="utf-8"))["controller_manager"][
        "ros__parameters"]
    configured = {k for k, v in cm.items() if isinstance(v, dict) and "type" in v}
    spawned = set()
    for node in _nodes(evaluation):
        if (node["package"], node["executable"]) == ("controller_manager", "spawner"):
            spawned.add(node["arguments"][0])
    assert spawned == configured == {"joint_state_broadcaster", "effort_controller"}
    # Each spawner starts when the one before it (first: the model's creation) exits.
    chain = [(target.kwargs.get("executable"), [a.kwargs["arguments"][0] for a in actions])
             for target, actions in evaluation.on_exit]
    assert chain == [("create", ["joint_state_broadcaster"]), ("spawner", ["effort_controller"])]
    assert evaluation.on_exit[1][0] is evaluation.on_exit[0][1][0]


def test_hil_create_targets_the_world_and_robot_description(evaluated):
    (create,) = [n for n in _nodes(evaluated("hil_gazebo.launch.py"))
                 if (n["package"], n["executable"]) == ("ros_gz_sim", "create")]
    argv = create["arguments"]
    assert argv[argv.index("-topic") + 1] == "robot_description"
    world_name = argv[argv.index("-world") + 1]
    assert world_name == _module_constant("hil_gazebo.launch.py", "WORLD_NAME")
    sdf = ET.parse(WORLD_FILE).getroot()
    assert sdf.find("world").get("name") == world_name


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_referenced_share_files_exist_in_source_tree(name, evaluated):
    """Argument defaults and included launch files in the package share exist in the source tree.

    The package share is the repo root in the stand-ins.
    """
    evaluation = evaluated(name)
    paths = [default for default, _ in declared_arguments(name).values()]
    paths += [str(path) for path, _ in evaluation.includes]
    found = 0
    for path in paths:
        if not path.startswith(str(ROOT) + os.sep):
            continue
        rel = Path(path).relative_to(ROOT)
        assert (ROOT / rel).exists(), f"{name}: references share/{rel}, missing in the repo"
        found += 1
    assert found, f"{name}: expected package-share paths"


def test_setup_py_installs_the_launch_and_gazebo_files():
    if not SETUP_PY.exists():
        pytest.skip("setup.py not written yet")
    text = SETUP_PY.read_text(encoding="utf-8")
    recursive = "os.walk" in text or "**" in text or "rglob" in text
    for directory in ("launch", "config", "description"):
        assert re.search(rf"['\"/]{directory}['\"/]", text) or directory in text, (
            f"setup.py data_files should install {directory}/")
    assert recursive or "description/gazebo" in text, (
        "setup.py data_files should install description/gazebo/ "
        "(arm_world.sdf, used by hil_gazebo.launch.py)")


# --------------------------------------------------------------------------- gazebo files

def test_world_sdf():
    root = ET.parse(WORLD_FILE).getroot()
    assert root.tag == "sdf"
    world = root.find("world")
    assert world is not None and world.get("name") == "arm_world"
    step = float(world.find("physics/max_step_size").text)
    assert step == pytest.approx(0.001)
    plugins = {p.get("name"): p.get("filename") for p in world.findall("plugin")}
    assert plugins["gz::sim::systems::Physics"] == "gz-sim-physics-system"
    assert plugins["gz::sim::systems::UserCommands"] == "gz-sim-user-commands-system"
    assert plugins["gz::sim::systems::SceneBroadcaster"] == "gz-sim-scene-broadcaster-system"
    models = {m.get("name") for m in world.findall("model")}
    assert "ground_plane" in models


def test_controllers_yaml():
    data = yaml.safe_load(CONTROLLERS_FILE.read_text(encoding="utf-8"))
    cm = data["controller_manager"]["ros__parameters"]
    assert cm["update_rate"] == 1000
    assert cm["joint_state_broadcaster"]["type"] == "joint_state_broadcaster/JointStateBroadcaster"
    assert cm["effort_controller"]["type"] == "forward_command_controller/ForwardCommandController"
    ec = data["effort_controller"]["ros__parameters"]
    assert ec["joints"] == _params_joints()
    assert ec["interface_name"] == "effort"
    # 1 controller update per physics step.
    step = float(ET.parse(WORLD_FILE).getroot().find("world/physics/max_step_size").text)
    assert cm["update_rate"] * step == pytest.approx(1.0)


def test_bridge_yaml():
    data = yaml.safe_load(BRIDGE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, list) and data
    for entry in data:
        assert BRIDGE_KEYS <= set(entry), f"bridge entry lacks {BRIDGE_KEYS - set(entry)}"
        assert entry["direction"] in BRIDGE_DIRECTIONS
        assert entry["gz_type_name"].startswith("gz.msgs.")
        assert re.fullmatch(r"\w+/msg/\w+", entry["ros_type_name"])
    clock = [e for e in data if e["ros_topic_name"] in ("/clock", "clock")]
    assert clock == [{
        "ros_topic_name": clock[0]["ros_topic_name"], "gz_topic_name": "/clock",
        "ros_type_name": "rosgraph_msgs/msg/Clock", "gz_type_name": "gz.msgs.Clock",
        "direction": "GZ_TO_ROS"}]


# --------------------------------------------------------------------------- URDF injection

SMALL_URDF = """<?xml version="1.0"?>
<robot name="t">
  <link name="base_link"/>
  <link name="a"><inertial><mass value="1"/><inertia ixx="1" ixy="0" ixz="0" iyy="1" iyz="0" izz="1"/></inertial></link>
  <link name="b"><inertial><mass value="1"/><inertia ixx="1" ixy="0" ixz="0" iyy="1" iyz="0" izz="1"/></inertial></link>
  <joint name="shoulder" type="revolute"><parent link="base_link"/><child link="a"/>
    <axis xyz="0 -1 0"/><limit lower="-3" upper="3" effort="60" velocity="10"/></joint>
  <joint name="elbow" type="revolute"><parent link="a"/><child link="b"/>
    <axis xyz="0 -1 0"/><limit lower="-3" upper="3" effort="30" velocity="10"/></joint>
  <joint name="tip" type="fixed"><parent link="b"/><child link="tip_link"/></joint>
  <link name="tip_link"/>
</robot>
"""


def _check_injected(text: str, joints: list, controllers: str) -> ET.Element:
    robot = ET.fromstring(text)  # well-formed
    assert robot.tag == "robot"
    rc = ros2_control_joints(text)
    assert list(rc) == joints
    for name in joints:
        assert rc[name]["command"] == ["effort"]
        assert rc[name]["state"] == ["position", "velocity"]
    (control,) = robot.findall("ros2_control")
    assert control.find("hardware/plugin").text == GZ_SYSTEM_PLUGIN == "gz_ros2_control/GazeboSimSystem"
    plugins = [p for p in robot.findall("gazebo/plugin")]
    assert len(plugins) == 1
    assert plugins[0].get("filename") == GZ_CONTROL_PLUGIN_FILENAME == "gz_ros2_control-system"
    assert plugins[0].get("name") == GZ_CONTROL_PLUGIN_NAME == "gz_ros2_control::GazeboSimROS2ControlPlugin"
    assert plugins[0].find("parameters").text == controllers
    assert plugins[0].find("robot_param").text == "robot_description"
    assert plugins[0].find("robot_param_node").text == "robot_state_publisher"
    # Welded to the world; the former root has an inertial (sdformat drops massless links).
    world_joints = [j for j in robot.findall("joint") if j.find("parent").get("link") == "world"]
    assert len(world_joints) == 1 and world_joints[0].get("type") == "fixed"
    root = world_joints[0].find("child").get("link")
    assert robot.find(f"link[@name='{root}']/inertial/mass") is not None
    assert robot.find("link[@name='world']") is not None
    return robot


def test_inject_small_urdf():
    text = inject_ros2_control(SMALL_URDF, ["shoulder", "elbow"], "/abs/ctrl.yaml",
                               initial_positions={"elbow": 0.5})
    robot = _check_injected(text, ["shoulder", "elbow"], "/abs/ctrl.yaml")
    init = robot.find("ros2_control/joint[@name='elbow']/state_interface[@name='position']/param")
    assert init.get("name") == "initial_value" and float(init.text) == 0.5
    origin = robot.find("joint[@name='world_to_base_link']/origin")
    assert origin.get("xyz") == "0 0 1.2"


def test_inject_rejects_bad_input():
    with pytest.raises(ValueError, match="not in the URDF"):
        inject_ros2_control(SMALL_URDF, ["shoulder", "wrist"], "/c.yaml")
    with pytest.raises(ValueError, match="type 'fixed'"):
        inject_ros2_control(SMALL_URDF, ["tip"], "/c.yaml")
    once = inject_ros2_control(SMALL_URDF, ["shoulder", "elbow"], "/c.yaml")
    with pytest.raises(ValueError, match="already has a <ros2_control>"):
        inject_ros2_control(once, ["shoulder", "elbow"], "/c.yaml")
    with pytest.raises(ValueError, match="not well-formed"):
        inject_ros2_control("<robot>", ["shoulder"], "/c.yaml")
    with pytest.raises(ValueError, match="<robot>"):
        inject_ros2_control("<sdf/>", ["shoulder"], "/c.yaml")
    with pytest.raises(ValueError, match="unknown joints"):
        inject_ros2_control(SMALL_URDF, ["shoulder"], "/c.yaml", initial_positions={"x": 1.0})


def test_inject_arm_urdf_matches_params_joints():
    urdf = _wait_for_urdf(timeout_s=float(os.environ.get("RC_WAIT_FOR_URDF_S", "0")))
    joints = _params_joints()
    assert joints == ["shoulder", "elbow"]
    controllers = str(CONTROLLERS_FILE)
    text = inject_ros2_control(urdf.read_text(encoding="utf-8"), joints, controllers)
    robot = _check_injected(text, joints, controllers)
    # The controllers YAML drives exactly the ros2_control joints.
    ctrl = yaml.safe_load(CONTROLLERS_FILE.read_text(encoding="utf-8"))
    assert ctrl["effort_controller"]["ros__parameters"]["joints"] == list(ros2_control_joints(text))
    # The original description is preserved: every original joint and link is still there.
    original = ET.parse(urdf).getroot()
    for tag in ("link", "joint"):
        names = {e.get("name") for e in original.findall(tag)}
        assert names <= {e.get("name") for e in robot.findall(tag)}
    # Effort-controlled joints need effort limits for gz_ros2_control.
    for name in joints:
        assert float(robot.find(f"joint[@name='{name}']/limit").get("effort")) > 0


# --------------------------------------------------------------------------- namespaced params

def test_scope_params_to_any_namespace(tmp_path):
    params = {"/**": {"ros__parameters": {"joints": ["shoulder", "elbow"]}},
              "base_controller": {"ros__parameters": {"kp": [60.0, 40.0]}},
              "residual_policy": {"ros__parameters": {"model_path": "/m.onnx"}},
              "residual_mixer": {"ros__parameters": {"residual_gain": 0.5}},
              "/arm/residual_mixer": {"ros__parameters": {"residual_gain": 0.25}}}
    scoped = scope_params_to_any_namespace(params)
    assert scoped["/**"] == params["/**"]
    for node in ("base_controller", "residual_policy", "residual_mixer"):
        assert scoped[f"/**/{node}"] == params[node]
        assert node not in scoped
    assert scoped["/arm/residual_mixer"] == params["/arm/residual_mixer"]  # absolute keys are kept
    with pytest.raises(ValueError, match="ros__parameters"):
        scope_params_to_any_namespace({"node": {"x": 1}})


# --------------------------------------------------------------------------- docs

def test_doc_mentions_command_packages_and_arguments(standins):
    text = DOC_FILE.read_text(encoding="utf-8")
    assert "ros2 launch residual_control hil_gazebo.launch.py" in text
    for pkg in ("ros-jazzy-ros-gz", "ros-jazzy-gz-ros2-control"):
        assert pkg in text
    for arg in declared_arguments("hil_gazebo.launch.py"):
        assert f"`{arg}`" in text, f"docs/gazebo_hil.md does not document `{arg}`"
    assert "/effort_controller/commands" in text and "/joint_states" in text


def test_sim_demo_mujoco_sim_publishes_clock_with_sim_time(evaluated):
    """mujoco_sim only publishes /clock with `publish_clock`: sim_demo must set it.

    It sets it in its launch-argument overrides, the last of its params files.
    """
    parameters = evaluated("sim_demo.launch.py").node("mujoco_sim")["parameters"]
    (entry,) = yaml.safe_load(Path(parameters[-1]).read_text(encoding="utf-8")).values()
    assert {"plant_file", "publish_clock", "use_sim_time"} <= set(entry["ros__parameters"])


def _source_topics(executable: str) -> set | None:
    """Topic literals of create_publisher/create_subscription in a node's module (if written)."""
    text = SETUP_PY.read_text(encoding="utf-8") if SETUP_PY.exists() else ""
    m = re.search(rf"""['"]\s*{executable}\s*=\s*([\w.]+)\s*:""", text)
    if not m:
        return None
    path = ROOT.joinpath(*m.group(1).split(".")).with_suffix(".py")
    if not path.exists():
        return None
    # The node's module plus the shared I/O helpers the runtime nodes build on.
    nodes = ROOT / "residual_control" / "nodes"
    sources = [path, nodes / "policy_io.py", nodes / "mixer_io.py"]
    topics = set()
    for source in sources:
        if not source.exists():
            continue
        for call in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (isinstance(call, ast.Call) and _func_name(call) in ("create_publisher",
                                                                      "create_subscription")
                    and len(call.args) >= 2 and isinstance(call.args[1], ast.Constant)):
                topics.add(call.args[1].value)
    return topics


def test_remapped_topics_exist_in_node_sources(evaluated):
    """Cross-check against the node code, for the nodes already written.

    Only residual_control.launch.py remaps; the others pass launch arguments.
    """
    name = "residual_control.launch.py"
    checked = 0
    for node in _nodes(evaluated(name)):
        if node["package"] != PACKAGE or not node["remappings"]:
            continue
        topics = _source_topics(node["executable"])
        if topics is None:
            continue
        for source, _ in node["remappings"]:
            assert source in topics, f"{node['executable']} source has no topic '{source}'"
            checked += 1
    if not checked:
        pytest.skip("no remapped node's source is written yet")


# --------------------------------------------------------------------------- on top of an external base

EXTERNAL = "residual_external_base.launch.py"


def test_external_base_launch_starts_only_policy_and_mixer(evaluated):
    nodes = _nodes(evaluated(EXTERNAL))
    assert {n["executable"] for n in nodes} == {"residual_policy", "residual_mixer"}
    assert {"params_file", "namespace", "model_path", "use_sim_time", "base_action_topic", "base_action_type",
            "command_topic", "joint_states_topic"} <= set(declared_arguments(EXTERNAL))


def test_external_base_launch_remaps_the_controller_output_and_the_hardware_input(standins):
    """base_action of both nodes -> the external controller's output; commands -> the hardware's command topic."""
    evaluation = launch_eval.evaluate(EXTERNAL, {"base_action_topic": "/my_controller/commands",
                                                 "command_topic": "/forward_effort_controller/commands",
                                                 "joint_states_topic": "/joint_states"})
    try:
        remaps = {n["executable"]: dict(n["remappings"]) for n in _nodes(evaluation)}
    finally:
        evaluation.shutdown()
    for exe in ("residual_policy", "residual_mixer"):
        assert remaps[exe]["base_action"] == "/my_controller/commands", remaps
        assert remaps[exe]["joint_states"] == "/joint_states", remaps
        topics = _source_topics(exe)
        assert topics is None or set(remaps[exe]) <= topics, (exe, set(remaps[exe]) - topics)
    assert remaps["residual_mixer"]["commands"] == "/forward_effort_controller/commands"
    assert "commands" not in remaps["residual_policy"]


def test_readme_shows_the_external_base_remappings(standins):
    """The README section names the launch file, the up option and the two remappings it makes."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.find("\n## On top of an existing ros2_control controller")
    assert start >= 0, "README: expected a section 'On top of an existing ros2_control controller'"
    section = text[start:text.find("\n## ", start + 1)]
    for needle in (EXTERNAL, "--external-base", "base_action_topic:=", "command_topic:=",
                   "base_action_type", "docs/external_base.md"):
        assert needle in section, f"README external-base section: expected {needle!r}"
    for arg in ("base_action_topic", "base_action_type", "command_topic"):
        assert arg in declared_arguments(EXTERNAL)
