"""Evaluating the launch files without launch/launch_ros: stand-ins for the launch classes they use.

launch and launch_ros are not installable here. The stand-ins record what a launch file builds
(each action's arguments), nothing more; :func:`evaluate` runs a launch file's description the
way ``ros2 launch`` would (launch arguments with their defaults, OpaqueFunctions, groups and
pushed namespaces, included launch files of this package, the actions of OnProcessExit
handlers) and returns what it started. ``get_package_share_directory('residual_control')`` is
the repository root, so the launch files read the source tree's files.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from support import ROOT

LAUNCH_DIR = ROOT / "launch"
LAUNCH_FILES = ["residual_control.launch.py", "sim_demo.launch.py", "hil_gazebo.launch.py",
                "residual_external_base.launch.py"]

# The launch modules and classes the launch files (and residual_control.launch_params) may use.
STANDIN_CLASSES = {
    "launch": ["LaunchDescription"],
    "launch.actions": ["DeclareLaunchArgument", "GroupAction", "IncludeLaunchDescription", "OpaqueFunction",
                       "RegisterEventHandler", "AppendEnvironmentVariable"],
    "launch.event_handlers": ["OnShutdown", "OnProcessExit"],
    "launch.launch_description_sources": ["PythonLaunchDescriptionSource"],
    "launch.substitutions": [],
    "launch_ros": [],
    "launch_ros.actions": ["Node", "PushRosNamespace"],
    "ament_index_python": [],
    "ament_index_python.packages": [],
}


class Recorded:
    """A stand-in action: its positional and keyword arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def arg(self, index: int, name: str):
        """Return the argument given at ``index`` or as ``name``."""
        return self.args[index] if len(self.args) > index else self.kwargs[name]


def standin_modules(other_share: Path) -> dict:
    """Return module name -> stand-in module (``other_share``: the share folder of any other package)."""
    mods = {}
    for mod, classes in STANDIN_CLASSES.items():
        m = types.ModuleType(mod)
        for c in classes:
            setattr(m, c, type(c, (Recorded,), {}))
        mods[mod] = m

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context.launch_configurations[self.name]

    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["ament_index_python.packages"].get_package_share_directory = (
        lambda pkg: str(ROOT) if pkg == "residual_control" else str(other_share))
    return mods


def install_standins(monkeypatch, other_share: Path) -> None:
    for name, module in standin_modules(other_share).items():
        monkeypatch.setitem(sys.modules, name, module)


class Context:
    def __init__(self, configs):
        self.launch_configurations = dict(configs)


class Evaluation:
    """What evaluating a launch file produced."""

    def __init__(self):
        self.nodes: list[tuple[dict, str | None]] = []  # (Node kwargs, pushed namespace)
        self.includes: list[tuple[Path, dict]] = []  # (included file, launch arguments)
        self.on_exit: list[tuple[Recorded, list]] = []  # (target action, actions run when it exits)
        self.on_shutdown: list = []

    def node(self, executable: str, package: str = "residual_control") -> dict:
        """Return the kwargs of the one Node of ``package``/``executable``."""
        (kwargs,) = [k for k, _ in self.nodes if (k.get("package"), k.get("executable")) == (package, executable)]
        return kwargs

    def shutdown(self) -> None:
        """Run the OnShutdown actions (the cleanup of generated params files)."""
        for action in self.on_shutdown:
            assert type(action).__name__ == "OpaqueFunction"
            action.kwargs["function"](Context({}))


def load_launch(path: Path):
    spec = importlib.util.spec_from_file_location(f"_launch_{path.stem.replace('.', '_')}_{id(path)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def description(launch_file: str) -> list:
    """Return the entities of a launch file's ``generate_launch_description()`` (stand-ins installed)."""
    ld = load_launch(LAUNCH_DIR / launch_file).generate_launch_description()
    assert type(ld).__name__ == "LaunchDescription", f"{launch_file}: expected a LaunchDescription"
    return list(ld.arg(0, "initial_entities"))


def declared_arguments(launch_file: str) -> dict:
    """DeclareLaunchArgument name -> (default_value, description), in declaration order."""
    out = {}
    for e in description(launch_file):
        if type(e).__name__ == "DeclareLaunchArgument":
            name = e.arg(0, "name")
            assert name not in out, f"{launch_file}: '{name}' declared twice"
            out[name] = (e.kwargs.get("default_value"), e.kwargs.get("description"))
    return out


def run(entities, ctx: Context, out: Evaluation) -> None:
    for e in entities:
        kind = type(e).__name__
        if kind == "DeclareLaunchArgument":
            ctx.launch_configurations.setdefault(e.arg(0, "name"), e.kwargs.get("default_value", ""))
        elif kind == "OpaqueFunction":
            run(e.kwargs["function"](ctx) or [], ctx, out)
        elif kind == "GroupAction":
            run(e.arg(0, "actions"), Context(ctx.launch_configurations), out)
        elif kind == "PushRosNamespace":
            ns = e.arg(0, "namespace")
            base = ctx.launch_configurations.get("ros_namespace") or ""
            ctx.launch_configurations["ros_namespace"] = (
                "/" + ns.strip("/") if ns.startswith("/") else base.rstrip("/") + "/" + ns.strip("/"))
        elif kind == "Node":
            out.nodes.append((e.kwargs, ctx.launch_configurations.get("ros_namespace")))
        elif kind == "IncludeLaunchDescription":
            path = Path(e.arg(0, "launch_description_source").arg(0, "launch_file_path"))
            arguments = dict(e.kwargs.get("launch_arguments", ()))
            out.includes.append((path, arguments))
            if path.parent != LAUNCH_DIR:
                continue  # another package's launch file (gz_sim)
            sub = Context(ctx.launch_configurations)
            sub.launch_configurations.update(arguments)
            run(description(path.name), sub, out)
        elif kind == "RegisterEventHandler":
            handler = e.arg(0, "event_handler")
            if type(handler).__name__ == "OnShutdown":
                out.on_shutdown.extend(handler.kwargs["on_shutdown"])
            elif type(handler).__name__ == "OnProcessExit":
                out.on_exit.append((handler.kwargs["target_action"], list(handler.kwargs["on_exit"])))
                run(handler.kwargs["on_exit"], ctx, out)
            else:
                raise AssertionError(f"the stand-ins do not know the event handler {type(handler).__name__}")
        elif kind == "AppendEnvironmentVariable":
            continue
        else:
            raise AssertionError(f"the stand-ins do not know {kind}")


def evaluate(launch_file: str, arguments: dict | None = None, outer_namespace: str | None = None) -> Evaluation:
    """Run ``launch_file`` with ``arguments`` (the others at their defaults), stand-ins installed."""
    out = Evaluation()
    configs = dict(arguments or {})
    if outer_namespace:
        configs["ros_namespace"] = outer_namespace
    run(description(launch_file), Context(configs), out)
    return out
