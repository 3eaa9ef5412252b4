"""The layering the README's layout promises, checked on the source files (AST, nothing imported).

* ``residual_control/core`` is pure Python + numpy: no rclpy, no ROS package (message, service,
  launch or ament module).
* The runtime (core, nodes, sim, robot, logs, launch_params, params_file, paths, hil, the package
  ``__init__`` and the launch files) never imports the harness (``residual_control.harness``) or the training code
  (``residual_control.training``), and imports nothing of the package outside the runtime, so the
  rule holds through every chain of imports. Imports inside functions and ``TYPE_CHECKING`` blocks
  count, relative imports are resolved, and ``importlib.import_module("...")`` with a literal name
  counts too.

Each rule is shown to fail on a synthetic source (``test_*_rule_finds``).
"""
from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

from support import ROOT

PACKAGE = "residual_control"

# Top-level modules that are ROS 2: the client library, the generated interfaces (``*_msgs``,
# ``*_srvs``, ``*_interfaces``), launch, ament and the rosidl/rcl/ros tooling. The ROS wheels
# installed here add whatever top-level modules they ship (see _installed_ros_modules).
ROS_MODULES = {"rclpy", "launch", "launch_ros", "launch_testing", "launch_xml", "launch_yaml", "message_filters",
               "tf2_ros", "tf2_py", "tf_transformations", "rosbag2_py", "builtin_interfaces", "rosgraph_msgs"}
ROS_PREFIXES = ("rcl", "ros", "ament", "rmw", "tf2_")  # rclpy, rcl_*, rosidl_*, ros2cli, ament_*, rmw_*
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces", "_actions")

RUNTIME_PACKAGES = ("core", "nodes", "sim", "robot", "logs")  # logs: the recorder node writes bags
RUNTIME_MODULES = ("launch_params", "params_file", "paths", "hil")
FORBIDDEN_IN_RUNTIME = (f"{PACKAGE}.harness", f"{PACKAGE}.training")


def _installed_ros_modules() -> set[str]:
    """Top-level modules of the installed ROS 2 wheels (distributions named ``ros-*``)."""
    found = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if not name.startswith("ros-"):
            continue
        top = dist.read_text("top_level.txt")
        if top:
            found.update(x.strip() for x in top.split() if x.strip())
        else:
            for f in dist.files or ():
                first = f.parts[0] if f.parts else ""
                if first.endswith(".py"):
                    found.add(first[:-3])
                elif first and "." not in first and first not in {"bin", "share", "include", "lib"}:
                    found.add(first)
    return found


_ROS_INSTALLED = _installed_ros_modules()


def is_ros_module(name: str) -> bool:
    top = name.split(".", 1)[0]
    return (top in ROS_MODULES or top in _ROS_INSTALLED or top.startswith(ROS_PREFIXES)
            or top.endswith(ROS_SUFFIXES))


def module_name(rel_path: str) -> tuple[str, str]:
    """Return (module name, package a relative import starts from) of a file relative to the repo root.

    Files outside the package (launch files) get ("", ""): they cannot import relatively.
    """
    parts = Path(rel_path).with_suffix("").parts
    if not parts or parts[0] != PACKAGE:
        return "", ""
    if parts[-1] == "__init__":
        name = ".".join(parts[:-1])
        return name, name
    name = ".".join(parts)
    return name, ".".join(parts[:-1])


def imported_modules(source: str, rel_path: str) -> list[tuple[int, str]]:
    """Every module a source imports, as (line, absolute dotted name).

    ``from X import a`` yields X and X.a (a may be a submodule); relative imports are resolved
    against the file's package; ``importlib.import_module("X")`` / ``__import__("X")`` with a
    string literal yields X.
    """
    _, package = module_name(rel_path)
    tree = ast.parse(source, rel_path)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                if node.level - 1 >= len(base_parts):
                    raise ValueError(f"{rel_path}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join(base_parts[:len(base_parts) - (node.level - 1)])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out.extend((node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = ast.unparse(node.func)
            if func in ("importlib.import_module", "import_module", "__import__"):
                out.append((node.lineno, node.args[0].value))
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _first_per_line(found: list[tuple[int, str]]) -> list[str]:
    """One finding per source line (``from X import a`` yields both X and X.a)."""
    seen: set[int] = set()
    return [text for line, text in found if not (line in seen or seen.add(line))]


def ros_imports(source: str, rel_path: str) -> list[str]:
    return _first_per_line([(line, f"{rel_path}:{line}: imports {name}")
                            for line, name in imported_modules(source, rel_path) if is_ros_module(name)])


def is_runtime(name: str) -> bool:
    """Return whether ``name`` is a module of the package that runs on a robot."""
    if name == PACKAGE:
        return True
    return (any(_within(name, f"{PACKAGE}.{p}") for p in RUNTIME_PACKAGES)
            or any(_within(name, f"{PACKAGE}.{m}") for m in RUNTIME_MODULES))


def runtime_violations(source: str, rel_path: str) -> list[str]:
    found = []
    for line, name in imported_modules(source, rel_path):
        if not _within(name, PACKAGE):
            continue
        bad = next((f for f in FORBIDDEN_IN_RUNTIME if _within(name, f)), None)
        if bad:
            found.append((line, f"{rel_path}:{line}: imports {name} ({bad} is never imported by the runtime)"))
        elif not is_runtime(name) and not _is_package_attribute(name):
            found.append((line, f"{rel_path}:{line}: imports {name} (outside the runtime: expected "
                                f"{PACKAGE}.{{{', '.join(RUNTIME_PACKAGES + RUNTIME_MODULES)}}})"))
    return _first_per_line(found)


def _is_package_attribute(name: str) -> bool:
    """``from residual_control import __version__`` names an attribute of the runtime package."""
    head, _, attr = name.rpartition(".")
    return head == PACKAGE and attr.startswith("__")


def _sources(paths) -> list[Path]:
    return sorted(p for p in paths if "__pycache__" not in p.parts)


CORE_SOURCES = _sources((ROOT / PACKAGE / "core").rglob("*.py"))
RUNTIME_SOURCES = _sources(
    [p for pkg in RUNTIME_PACKAGES for p in (ROOT / PACKAGE / pkg).rglob("*.py")]
    + [ROOT / PACKAGE / f"{m}.py" for m in RUNTIME_MODULES]
    + [ROOT / PACKAGE / "__init__.py"]
    + list((ROOT / "launch").glob("*.py")))


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_the_checked_sets_are_the_tree():
    # A renamed or moved folder must not make the checks below pass on nothing.
    assert len(CORE_SOURCES) >= 5, CORE_SOURCES
    for part in RUNTIME_PACKAGES:
        assert any(f"/{part}/" in f"/{_rel(p)}" for p in RUNTIME_SOURCES), part
    for m in RUNTIME_MODULES:
        assert (ROOT / PACKAGE / f"{m}.py").is_file(), m
    assert (ROOT / PACKAGE / "harness" / "__init__.py").is_file()
    assert (ROOT / PACKAGE / "training" / "__init__.py").is_file()
    assert "rclpy" in _ROS_INSTALLED or is_ros_module("rclpy")


@pytest.mark.parametrize("path", CORE_SOURCES, ids=_rel)
def test_core_imports_no_ros(path: Path):
    found = ros_imports(path.read_text(), _rel(path))
    assert found == [], "core/ is pure Python + numpy:\n" + "\n".join(found)


@pytest.mark.parametrize("path", RUNTIME_SOURCES, ids=_rel)
def test_runtime_imports_no_harness_or_training(path: Path):
    found = runtime_violations(path.read_text(), _rel(path))
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("source, module", [
    ("import rclpy\n", "rclpy"),
    ("import rclpy.node\n", "rclpy.node"),
    ("from rclpy.node import Node\n", "rclpy.node"),
    ("from sensor_msgs.msg import JointState\n", "sensor_msgs.msg"),
    ("from diagnostic_msgs.msg import DiagnosticStatus\n", "diagnostic_msgs.msg"),
    ("from rcl_interfaces.srv import SetParameters\n", "rcl_interfaces.srv"),
    ("from builtin_interfaces.msg import Time\n", "builtin_interfaces.msg"),
    ("from launch_ros.actions import Node\n", "launch_ros.actions"),
    ("from ament_index_python.packages import get_package_share_directory\n", "ament_index_python.packages"),
    ("import math\n\n\ndef f():\n    import rclpy\n    return rclpy\n", "rclpy"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from std_msgs.msg import Header\n", "std_msgs.msg"),
    ("import importlib\nnode = importlib.import_module('rclpy.node')\n", "rclpy.node"),
])
def test_core_rule_finds(source: str, module: str):
    found = ros_imports(source, "residual_control/core/example.py")
    assert any(f.startswith("residual_control/core/example.py:") and f.endswith(f"imports {module}")
               for f in found), found


@pytest.mark.parametrize("source", [
    "import math\nimport numpy as np\n",
    "from .mixer import Mixer\nfrom .errors import ConfigError\n",
    "import onnxruntime\n",
    "import yaml\nfrom dataclasses import dataclass\n",
])
def test_core_rule_allows(source: str):
    assert ros_imports(source, "residual_control/core/example.py") == []


@pytest.mark.parametrize("path, source, module", [
    ("residual_control/nodes/example.py", "from ..harness.probe import Probe\n", "residual_control.harness.probe"),
    ("residual_control/nodes/example.py", "from .. import harness\n", "residual_control.harness"),
    ("residual_control/nodes/example.py", "from ..training import env\n", "residual_control.training"),
    ("residual_control/nodes/example.py", "import residual_control.harness.graph\n",
     "residual_control.harness.graph"),
    ("residual_control/nodes/example.py", "from residual_control.training.env import ResidualEnv\n",
     "residual_control.training.env"),
    ("residual_control/nodes/example.py", "def main():\n    from ..harness.graph import Graph\n",
     "residual_control.harness.graph"),
    ("residual_control/sim/example.py", "from ..training.common import config\n", "residual_control.training.common"),
    ("residual_control/sim/__init__.py", "from ..harness import faults\n", "residual_control.harness"),
    ("residual_control/core/sub/example.py", "from ...harness import probe\n", "residual_control.harness"),
    ("residual_control/paths.py", "from .training import common\n", "residual_control.training"),
    ("residual_control/hil.py", "from . import training\n", "residual_control.training"),
    ("residual_control/launch_params.py",
     "import importlib\nm = importlib.import_module('residual_control.harness.demo')\n",
     "residual_control.harness.demo"),
    ("launch/example.launch.py", "from residual_control.harness.graph import runtime_specs\n",
     "residual_control.harness.graph"),
    # Outside the runtime without being the harness: the cli, which imports the harness.
    ("residual_control/nodes/example.py", "from ..cli import main\n", "residual_control.cli"),
    ("residual_control/nodes/example.py", "from ..harnessed import x\n", "residual_control.harnessed"),
])
def test_runtime_rule_finds(path: str, source: str, module: str):
    found = runtime_violations(source, path)
    assert any(f.startswith(f"{path}:") and f"imports {module} (" in f for f in found), found


@pytest.mark.parametrize("path, source", [
    ("residual_control/nodes/example.py", "from ..core.mixer import Mixer\nfrom .qos import CONTROL_QOS\n"),
    ("residual_control/nodes/example.py", "from ..sim.sink_record import SinkRecord\nfrom .. import paths\n"),
    ("residual_control/sim/__init__.py", "from .plant import Plant\n"),
    ("residual_control/nodes/example.py", "from .. import __version__\n"),
    ("residual_control/nodes/example.py", "import rclpy\nfrom sensor_msgs.msg import JointState\n"),
    ("launch/example.launch.py", "from residual_control.launch_params import node_parameters\n"),
])
def test_runtime_rule_allows(path: str, source: str):
    assert runtime_violations(source, path) == []


def test_relative_imports_resolve_from_the_files_package():
    assert imported_modules("from ..harness import probe\n", "residual_control/nodes/x.py") == [
        (1, "residual_control.harness"), (1, "residual_control.harness.probe")]
    assert imported_modules("from . import plant\n", "residual_control/sim/__init__.py") == [
        (1, "residual_control.sim"), (1, "residual_control.sim.plant")]
    assert imported_modules("from .mixer import Mixer\n", "residual_control/core/policy.py")[0] == (
        1, "residual_control.core.mixer")
    with pytest.raises(ValueError, match="beyond the top-level package"):
        imported_modules("from ...x import y\n", "residual_control/nodes/x.py")


def test_test_modules_have_unique_basenames():
    """Test modules have unique basenames: pytest imports them by basename (rootdir mode)."""
    from collections import Counter

    names = Counter(p.name for p in (ROOT / "test").rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], [n for n, c in names.items() if c > 1]
