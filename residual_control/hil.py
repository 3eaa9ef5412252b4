"""Launch-time helpers for the Gazebo (gz-sim) HIL setup and the launch files.

Pure Python (standard library only): no rclpy, launch or Gazebo import, so the
tests can call these functions on a machine without ROS 2.

* :func:`inject_ros2_control` takes the one robot description
  (``description/arm.urdf``) and returns a URDF string with the blocks that
  gz-sim + gz_ros2_control need: a ``<ros2_control>`` system using
  ``gz_ros2_control/GazeboSimSystem`` (effort command interface, position and
  velocity state interfaces per joint), the ``<gazebo>`` plugin
  ``gz_ros2_control-system`` pointing at the controllers YAML, and a fixed
  joint to the ``world`` link so the arm is bolted down.
* :func:`scope_params_to_any_namespace` rewrites a ROS 2 params file so that
  its node-name keys also match when the nodes are pushed into a namespace.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Dict, Iterable, Mapping, Sequence

GZ_SYSTEM_PLUGIN = "gz_ros2_control/GazeboSimSystem"
GZ_CONTROL_PLUGIN_FILENAME = "gz_ros2_control-system"
GZ_CONTROL_PLUGIN_NAME = "gz_ros2_control::GazeboSimROS2ControlPlugin"
WORLD_LINK = "world"

_MOVABLE_JOINT_TYPES = {"revolute", "continuous", "prismatic"}


def _root_links(robot: ET.Element) -> list:
    links = [link.get("name") for link in robot.findall("link")]
    children = {
        child.get("link")
        for joint in robot.findall("joint")
        for child in joint.findall("child")
    }
    return [name for name in links if name not in children]


def inject_ros2_control(
    urdf_xml: str,
    joints: Sequence[str],
    controllers_file: str,
    *,
    command_interface: str = "effort",
    state_interfaces: Iterable[str] = ("position", "velocity"),
    initial_positions: Mapping[str, float] | None = None,
    fix_to_world: bool = True,
    base_height: float = 1.2,
    robot_param_node: str = "robot_state_publisher",
    system_name: str = "GazeboSimSystem",
) -> str:
    """Return ``urdf_xml`` with the gz_ros2_control blocks added.

    ``joints`` are the joints that get a ``<joint>`` entry in the
    ``<ros2_control>`` block (in that order); each must be a movable joint of
    the URDF. ``controllers_file`` is the absolute path of the controller
    manager YAML the Gazebo plugin loads (``config/gazebo_controllers.yaml``).

    With ``fix_to_world`` (default), when the tree's root link is not already
    ``world``, a ``world`` link and a fixed joint ``world_to_<root>`` placing
    the root ``base_height`` metres above the ground are added; otherwise the
    arm would be a free-floating body in gz-sim. A root link without
    ``<inertial>`` gets a nominal one (1 kg; it is welded to the world, so
    it changes no dynamics), because sdformat's URDF conversion drops
    massless links and their children.

    Raises ``ValueError`` when the URDF is not a ``<robot>``, a joint is
    missing or fixed, or the URDF already carries a ``<ros2_control>`` block
    or a gz_ros2_control plugin (one robot description, one injection).
    """
    try:
        robot = ET.fromstring(urdf_xml)
    except ET.ParseError as exc:
        raise ValueError(f"inject_ros2_control: the URDF is not well-formed XML: {exc}") from exc
    if robot.tag != "robot":
        raise ValueError(
            f"inject_ros2_control: expected a <robot> root element, found <{robot.tag}>"
        )
    if not joints:
        raise ValueError("inject_ros2_control: expected at least one joint, found none")
    if robot.find("ros2_control") is not None:
        raise ValueError(
            "inject_ros2_control: the URDF already has a <ros2_control> block; "
            "expected a plain description (the HIL launch adds the block)"
        )
    for plugin in robot.iter("plugin"):
        if plugin.get("filename", "").endswith(GZ_CONTROL_PLUGIN_FILENAME):
            raise ValueError(
                "inject_ros2_control: the URDF already loads gz_ros2_control-system; "
                "expected a plain description (the HIL launch adds the plugin)"
            )
    if not controllers_file:
        raise ValueError("inject_ros2_control: expected a controllers YAML path, found ''")

    urdf_joints = {j.get("name"): j for j in robot.findall("joint")}
    for name in joints:
        if name not in urdf_joints:
            raise ValueError(
                f"inject_ros2_control: joint '{name}' is not in the URDF "
                f"(found {sorted(urdf_joints)})"
            )
        jtype = urdf_joints[name].get("type")
        if jtype not in _MOVABLE_JOINT_TYPES:
            raise ValueError(
                f"inject_ros2_control: joint '{name}' has type '{jtype}'; "
                f"expected one of {sorted(_MOVABLE_JOINT_TYPES)}"
            )
    initial_positions = dict(initial_positions or {})
    unknown = set(initial_positions) - set(joints)
    if unknown:
        raise ValueError(
            f"inject_ros2_control: initial_positions for unknown joints {sorted(unknown)}"
        )

    if fix_to_world:
        roots = _root_links(robot)
        if len(roots) != 1:
            raise ValueError(
                f"inject_ros2_control: expected one root link, found {roots}"
            )
        root = roots[0]
        if root != WORLD_LINK:
            root_link = robot.find(f"link[@name='{root}']")
            if root_link.find("inertial") is None:
                # sdformat's URDF parser drops a massless link together with
                # everything below it; the root is welded to the world, so
                # its mass has no dynamic effect.
                inertial = ET.SubElement(root_link, "inertial")
                ET.SubElement(inertial, "origin", {"xyz": "0 0 0", "rpy": "0 0 0"})
                ET.SubElement(inertial, "mass", {"value": "1.0"})
                ET.SubElement(
                    inertial,
                    "inertia",
                    {"ixx": "0.001", "ixy": "0", "ixz": "0",
                     "iyy": "0.001", "iyz": "0", "izz": "0.001"},
                )
            world = ET.Element("link", {"name": WORLD_LINK})
            fixed = ET.Element("joint", {"name": f"world_to_{root}", "type": "fixed"})
            ET.SubElement(fixed, "parent", {"link": WORLD_LINK})
            ET.SubElement(fixed, "child", {"link": root})
            ET.SubElement(fixed, "origin", {"xyz": f"0 0 {float(base_height):g}", "rpy": "0 0 0"})
            robot.insert(0, fixed)
            robot.insert(0, world)

    control = ET.SubElement(robot, "ros2_control", {"name": system_name, "type": "system"})
    hardware = ET.SubElement(control, "hardware")
    ET.SubElement(hardware, "plugin").text = GZ_SYSTEM_PLUGIN
    for name in joints:
        joint = ET.SubElement(control, "joint", {"name": name})
        ET.SubElement(joint, "command_interface", {"name": command_interface})
        for interface in state_interfaces:
            state = ET.SubElement(joint, "state_interface", {"name": interface})
            if interface == "position" and name in initial_positions:
                ET.SubElement(state, "param", {"name": "initial_value"}).text = (
                    f"{float(initial_positions[name]):g}"
                )

    gazebo = ET.SubElement(robot, "gazebo")
    plugin = ET.SubElement(
        gazebo,
        "plugin",
        {"filename": GZ_CONTROL_PLUGIN_FILENAME, "name": GZ_CONTROL_PLUGIN_NAME},
    )
    ET.SubElement(plugin, "parameters").text = controllers_file
    ET.SubElement(plugin, "robot_param").text = "robot_description"
    ET.SubElement(plugin, "robot_param_node").text = robot_param_node

    ET.indent(robot, space="  ")
    return '<?xml version="1.0"?>\n' + ET.tostring(robot, encoding="unicode") + "\n"


def ros2_control_joints(urdf_xml: str) -> Dict[str, Dict[str, list]]:
    """Joints of the ``<ros2_control>`` blocks: name -> {command, state} interface names."""
    robot = ET.fromstring(urdf_xml)
    out: Dict[str, Dict[str, list]] = {}
    for control in robot.findall("ros2_control"):
        for joint in control.findall("joint"):
            out[joint.get("name")] = {
                "command": [c.get("name") for c in joint.findall("command_interface")],
                "state": [s.get("name") for s in joint.findall("state_interface")],
            }
    return out


def scope_params_to_any_namespace(params: Mapping[str, Any]) -> Dict[str, Any]:
    """Re-key a loaded ROS 2 params file so node keys match in any namespace.

    A params-file key ``base_controller`` only matches the node
    ``/base_controller``; once the launch pushes a namespace the node is
    ``/<ns>/base_controller`` and would silently run on defaults. Keys that
    are plain node names become ``/**/<name>``; keys that already start with
    ``/`` (``/**``, fully qualified names) are kept as they are.
    """
    out: Dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(value, Mapping) or "ros__parameters" not in value:
            raise ValueError(
                f"scope_params_to_any_namespace: expected '{key}' to hold "
                "'ros__parameters' (ROS 2 params-file format)"
            )
        new_key = key if str(key).startswith("/") else f"/**/{key}"
        if new_key in out:
            raise ValueError(f"scope_params_to_any_namespace: duplicate key '{new_key}'")
        out[new_key] = value
    return out
