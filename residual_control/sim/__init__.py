"""MuJoCo simulation of the residual_control arm (plant, references, ROS 2 adapters).

The pure-Python parts (``plant``, ``trajectories``) never import rclpy; the
``*_node`` modules are thin rclpy adapters around them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

PACKAGE_NAME = "residual_control"


def _candidate_roots() -> Iterator[Path]:
    """Source tree first; the ament share directory only if that lacks the file."""
    yield Path(__file__).resolve().parents[2]  # source tree: <repo>/residual_control/sim
    try:  # installed package: <prefix>/share/residual_control
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        yield Path(get_package_share_directory(PACKAGE_NAME))
    except Exception:  # not importable, AMENT_PREFIX_PATH unset, package not installed
        return


def package_path(*parts: str) -> Path:
    """Path of a package data file (``description/...``, ``config/...``).

    Looks in the source tree first, then in the ament share directory
    ``share/residual_control`` when ament_index_python is importable.
    Raises FileNotFoundError naming every place searched.
    """
    searched = []
    for root in _candidate_roots():
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
        searched.append(str(candidate))
    raise FileNotFoundError(
        f"{'/'.join(parts)}: expected in one of {searched}, found none"
    )


def description_path(name: str) -> Path:
    """Path of a robot description file, e.g. ``description_path('arm.mjcf.xml')``."""
    return package_path("description", name)


def resolve_config_file(path: str) -> Path:
    """Resolve a user-given config path: as given (absolute or relative to the
    working directory), else relative to the package root / share directory
    (``config/plants/real.yaml`` or just ``real.yaml`` for a plant file)."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    for parts in (p.parts, ("config",) + p.parts, ("config", "plants") + p.parts):
        try:
            return package_path(*parts)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"config file {path!r}: not found (as given nor in the package)")


__all__ = ["description_path", "package_path", "resolve_config_file", "PACKAGE_NAME"]
