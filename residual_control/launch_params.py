"""How the launch files and ``residual-control up`` hand parameters to a node, and what they build.

What the launch files build: :class:`PackageNodes`, :func:`argument`,
:func:`launch_description` (each piece the three launch files share, once).

Pure Python (PyYAML only) at import: launch, launch_ros and ament_index_python
are imported inside the functions that build launch actions, so the runtime
and the tests import this module on machines without launch_ros.

ROS 2 merges every ``--params-file`` of a process into one list of node
entries, in the order each entry's key first appears, and rclpy applies the
entries that match the node in that order: the last match wins. An override
passed the usual way (launch_ros turns a dict into ``/**: {...}``, ``-p``
lands under ``/**``) joins the user's own ``/**`` entry, which comes before
the user's ``residual_policy:`` entry, so the user's file silently wins
over the launch argument. :func:`node_params_files` instead writes the
overrides under a key that matches the node in any namespace and that no
earlier file uses (``/**/<node>``, or ``/**/**/<node>`` ... when taken), so
it is a new, last entry: a launch argument always reaches the node.

With a namespace, node-name keys of the user's files (``base_controller:``)
would not match ``/<ns>/base_controller``; such files are re-keyed into a
copy (``/**/base_controller``, in place, so their order still counts).

Generated files go into a folder the caller owns: :class:`ParamsFolder`
(a private temporary folder removed by ``cleanup()`` and at interpreter
exit) for the launch files, the graph's log folder for ``residual-control
up``; nothing is left in the temporary folder.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any, Iterable, Mapping, Sequence

from .params_file import load as _load
from .params_file import section

__all__ = ["NodeParams", "PackageNodes", "ParamsFolder", "argument", "common_joints", "in_namespace",
           "launch_argument", "launch_description", "node_keys", "node_params_files", "override_key",
           "scope_to_any_namespace", "share_path", "truthy"]


def common_joints(path: str | os.PathLike) -> list:
    """Return the robot's joints: ``joints`` of the params file's ``/**`` entry; RuntimeError when it has none."""
    joints = section(_load(path), "/**").get("joints")
    if not joints:
        raise RuntimeError(f"{os.fspath(path)}: expected `/**: ros__parameters: joints: [...]`, found none")
    return [str(j) for j in joints]


def node_keys(params: Mapping[str, Any], prefix: str = "") -> set:
    """Return the node names of a loaded params file, as ROS 2 forms them (nested keys joined by '/')."""
    out = set()
    for key, value in params.items():
        if not isinstance(value, Mapping) or key == "ros__parameters":
            continue
        name = f"{prefix}/{key}" if prefix else str(key)
        if "ros__parameters" in value:
            out.add(name)
        out |= node_keys(value, name)
    return out


def override_key(node_name: str, taken: Iterable[str]) -> str:
    """Return a key matching ``node_name`` in any namespace that is not in ``taken``."""
    taken = set(taken)
    key = f"/**/{node_name.strip('/')}"
    while key in taken:
        key = "/**" + key
    return key


class ParamsFolder:
    """A private temporary folder for generated params files; ``cleanup()`` removes it (idempotent)."""

    def __init__(self, prefix: str = "residual_control_params_") -> None:
        self.path = tempfile.mkdtemp(prefix=prefix)
        atexit.register(self.cleanup)

    def cleanup(self, *_args, **_kwargs) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __str__(self) -> str:
        return self.path

    def __fspath__(self) -> str:
        return self.path


class NodeParams:
    """The ``parameters`` of the nodes a launch file starts.

    :func:`node_params_files` into one :class:`ParamsFolder` (``folder.cleanup`` at shutdown).
    """

    def __init__(self, namespaced: bool) -> None:
        self.folder = ParamsFolder()
        self.namespaced = namespaced

    def __call__(self, node_name: str, params_files: Sequence[str | os.PathLike],
                 overrides: Mapping[str, Any] | None, namespaced: bool | None = None) -> list:
        """Return the ``--params-file`` paths of ``node_name``; ``namespaced`` None: the launch file's."""
        return node_params_files(params_files, node_name, overrides, self.folder,
                                 self.namespaced if namespaced is None else namespaced)


def truthy(value: str) -> bool:
    """Return whether a boolean launch argument is true: '1', 'true', 'yes' or 'on' (any case)."""
    return value.strip().lower() in ("1", "true", "yes", "on")


def outer_namespace(launch_configurations: Mapping[str, Any]) -> str:
    """Return the namespace an including launch file pushed (``PushRosNamespace``), without slashes."""
    return (launch_configurations.get("ros_namespace") or "").strip("/")


def in_namespace(namespace: str, launch_configurations: Mapping[str, Any]) -> bool:
    """Whether nodes started under ``namespace`` (inside any outer one) run in a namespace other than ``/``."""
    return bool(namespace.strip("/") or outer_namespace(launch_configurations))


def scope_to_any_namespace(params: Mapping[str, Any]) -> dict:
    """``params`` with each relative top-level key ``k`` re-keyed to match ``/<any namespace>/k``.

    The new key is ``/**/k`` (``/**/**/k`` ... when the file already uses it),
    so entries keep their order and none merges into another; absolute keys
    (``/**``, ``/arm/node``) are kept.
    """
    taken = {str(k) for k in params}
    out = {}
    for key, value in params.items():
        key = str(key)
        if not key.startswith("/"):
            key = override_key(key, taken)
            taken.add(key)
        out[key] = value
    return out


def _write(folder: str | os.PathLike, stem: str, data: Mapping[str, Any]) -> str:
    import yaml

    fd, path = tempfile.mkstemp(prefix=f"{stem}_", suffix=".yaml", dir=os.fspath(folder))
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        yaml.safe_dump(dict(data), stream, sort_keys=False)
    return path


def node_params_files(params_files: Sequence[str | os.PathLike], node_name: str,
                      overrides: Mapping[str, Any] | None, folder: str | os.PathLike,
                      namespaced: bool) -> list:
    """Return the ``--params-file`` paths, in order, that give ``node_name`` its parameters.

    ``params_files`` are the user's files (the later wins, as in ROS 2);
    ``overrides`` (launch arguments) win over all of them, whatever keys they
    use. ``namespaced``: the node runs in a namespace other than ``/``, so
    node-name keys are re-keyed to ``/**/<node>`` in a copy. New files are
    written in ``folder``; the user's files are passed as they are otherwise.
    """
    out: list = []
    taken: set = set()
    for path in params_files:
        path = os.fspath(path)
        try:
            params = _load(path)
        except Exception:
            if namespaced:
                raise
            # The node reports a missing or malformed file itself; pass it on as given.
            out.append(path)
            continue
        if namespaced and any(not str(k).startswith("/") for k in params):
            params = scope_to_any_namespace(params)
            stem = os.path.splitext(os.path.basename(path))[0]
            out.append(_write(folder, f"{stem}_ns", params))
        else:
            out.append(path)
        taken |= node_keys(params)
    if overrides:
        key = override_key(node_name, taken)
        out.append(_write(folder, f"{node_name.strip('/')}_overrides", {key: {"ros__parameters": dict(overrides)}}))
    return out


# --------------------------------------------------------------------------- launch files

PACKAGE = "residual_control"
RUNTIME_LAUNCH_FILE = "residual_control.launch.py"

# Defaults of the launch arguments several launch files declare (a tuple: a file in the package share).
SHARED_DEFAULTS: Mapping[str, Any] = {
    "params_file": ("config", "residual_control.yaml"),
    "reference_file": ("config", "reference.yaml"),
    "plant_file": ("config", "plants", "nominal.yaml"),
    "namespace": "",
    "model_path": "",
    "log_level": "info",
    "robot": "",
}


#: The launch arguments ``robot:=DIR`` sets: each to the robot folder's file (robot.yaml key), where it has one.
ROBOT_FILES: Mapping[str, str] = {"params_file": "params", "reference_file": "reference", "plant_file": "plant",
                                  "model_path": "model"}


def share_path(*parts: str) -> str:
    """Return a path in the installed package share (the share folder itself without ``parts``)."""
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def argument(name: str, description: str, default: str | tuple | None = None):
    """Return the ``DeclareLaunchArgument`` of ``name``.

    ``default`` None: its :data:`SHARED_DEFAULTS` entry, a tuple: that file in the package share.
    """
    from launch.actions import DeclareLaunchArgument

    if default is None:
        if name not in SHARED_DEFAULTS:
            raise ValueError(f"launch argument '{name}': expected a default (shared defaults exist for "
                             f"{sorted(SHARED_DEFAULTS)}), found none")
        default = SHARED_DEFAULTS[name]
    if isinstance(default, tuple):
        default = share_path(*default)
    return DeclareLaunchArgument(name, default_value=default, description=description)


def robot_and_record_arguments() -> list:
    """Return the launch arguments every graph launch file shares: ``robot`` and the recording ones."""
    return [
        argument('robot', 'Robot folder (with robot.yaml) or a shipped robot\'s name: its params file, reference, '
                          'plant and model replace those arguments (empty: the arguments as given)'),
        argument('record', 'true: also start residual_recorder, a rosbag2 bag of the graph\'s topics',
                 default='false'),
        argument('record_path', 'Bag folder record:=true writes (must not exist; empty: '
                                'residual_control_<UTC time> in the working folder)', default=''),
        argument('record_storage', 'Storage of the recorded bag: mcap or sqlite3', default='mcap'),
    ]


def launch_description(setup, *entities):
    """Return the ``LaunchDescription`` of a launch file.

    ``entities`` (its arguments ...), then ``setup(context)`` as an ``OpaqueFunction`` (it builds the
    nodes from the arguments' values).
    """
    from launch import LaunchDescription
    from launch.actions import OpaqueFunction

    return LaunchDescription([*entities, OpaqueFunction(function=setup)])


def launch_argument(context, name: str) -> str:
    """Return the value of the launch argument ``name`` in a launch ``context``."""
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name).perform(context)


class PackageNodes:
    """The residual_control nodes one launch file starts, built in its ``OpaqueFunction``.

    Every node is named for its executable, reads the launch file's ``params_file`` (and any
    further files) and gets the launch file's ``log_level``. Launch arguments win over every
    entry of the params files, with or without a namespace (:class:`NodeParams`: an override
    passed as a dict would lose to a ``residual_policy:`` entry); the generated files live in a
    private folder that :meth:`cleanup` removes at shutdown.
    """

    def __init__(self, context) -> None:
        self.context = context
        robot = launch_argument(context, "robot") if "robot" in context.launch_configurations else ""
        #: ``robot:=DIR``: the robot folder whose params file, reference, plant and model the nodes use.
        self.robot = None
        if robot:
            from .robot.folder import load_robot

            self.robot = load_robot(robot)
        self.namespace = self.arg("namespace")
        self.params_file = self.arg("params_file")
        self.log_level = self.arg("log_level")
        self.params = NodeParams(in_namespace(self.namespace, context.launch_configurations))

    def arg(self, name: str) -> str:
        """Return the value of the launch argument ``name`` (with ``robot:=``, the robot's file for a file argument)."""
        if self.robot is not None and name in ROBOT_FILES:
            path = getattr(self.robot, ROBOT_FILES[name])
            if path is not None:
                return str(path)
        return launch_argument(self.context, name)

    def node(self, executable: str, overrides: Mapping[str, Any], remappings: list | None = None,
             more_params_files: Sequence[str] = ()):
        """Return the ``Node`` of ``executable``.

        Its parameters: ``params_file`` then ``more_params_files``, ``overrides`` last.
        """
        from launch_ros.actions import Node

        return Node(
            package=PACKAGE,
            executable=executable,
            name=executable,
            output="screen",
            parameters=self.params(executable, [self.params_file, *more_params_files], overrides),
            remappings=remappings,
            ros_arguments=["--log-level", self.log_level],
        )

    def plant_side(self, use_sim_time: bool) -> list:
        """reference_publisher (``params_file``, then ``reference_file``) and perception (``plant_file``)."""
        return [
            self.node("reference_publisher", {"use_sim_time": use_sim_time},
                      more_params_files=[self.arg("reference_file")]),
            self.node("perception", {"plant_file": self.arg("plant_file"), "use_sim_time": use_sim_time}),
        ]

    def recorder(self, use_sim_time: bool, remappings: list | None = None):
        """residual_recorder (``record:=true``): the graph's topics into the bag ``record_path`` (docs/logs.md).

        Its metadata: this launch file's params file, model and robot.
        """
        return self.node("residual_recorder", {
            "use_sim_time": use_sim_time, "out": self.arg("record_path"), "storage": self.arg("record_storage"),
            "params_file": self.params_file, "model_path": self.arg("model_path"), "robot": self.arg("robot")},
            remappings)

    def in_namespace(self, actions: Sequence):
        """``actions`` in a group that pushes ``namespace`` (when not empty) onto them."""
        from launch.actions import GroupAction
        from launch_ros.actions import PushRosNamespace

        actions = list(actions)
        if self.namespace.strip("/"):
            actions.insert(0, PushRosNamespace(self.namespace))
        return GroupAction(actions)

    def runtime(self, use_sim_time: bool, command_topic: str = "commands",
                joint_states_topic: str = "joint_states"):
        """Include residual_control.launch.py (base_controller, residual_policy, residual_mixer).

        With this launch file's params_file, namespace, model_path and log_level.
        """
        from launch.actions import IncludeLaunchDescription
        from launch.launch_description_sources import PythonLaunchDescriptionSource

        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(share_path("launch", RUNTIME_LAUNCH_FILE)),
            launch_arguments={
                "params_file": self.params_file,
                "namespace": self.namespace,
                "model_path": self.arg("model_path"),
                "use_sim_time": "true" if use_sim_time else "false",
                "command_topic": command_topic,
                "joint_states_topic": joint_states_topic,
                "log_level": self.log_level,
                # record:=true of the including file (a launch file without the argument: no recording)
                **{name: str(self.context.launch_configurations.get(name, default))
                   for name, default in (("record", "false"), ("record_path", ""), ("record_storage", "mcap"))},
            }.items(),
        )

    def cleanup(self):
        """Remove the generated params files at shutdown."""
        from launch.actions import OpaqueFunction, RegisterEventHandler
        from launch.event_handlers import OnShutdown

        return RegisterEventHandler(OnShutdown(on_shutdown=[OpaqueFunction(function=self.params.folder.cleanup)]))
