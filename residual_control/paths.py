"""Locate the package's data (config/, models/, description/, launch/): the one path resolver.

In a source checkout (the development environment) the data sits next to the
Python package; after a colcon build it is in share/residual_control. The
source tree is looked in first.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "residual_control"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_path(*parts: str) -> Path:
    """Path of a data file of the package; raises FileNotFoundError naming where it looked."""
    candidates = [SOURCE_ROOT.joinpath(*parts)]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)).joinpath(*parts))
        except (PackageNotFoundError, ValueError, LookupError, OSError):
            pass
    except ImportError:
        pass
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(
        f"{os.path.join(*parts)}: expected in one of {[str(c.parent) for c in candidates]}, found none")


def default_params_file() -> Path:
    return share_path("config", "residual_control.yaml")


def default_model() -> Path:
    return share_path("models", "residual_bc.onnx")


def description_path(name: str) -> Path:
    """Path of a robot description file, e.g. ``description_path('arm.mjcf.xml')``."""
    return share_path("description", name)


def resolve_file(path: str | os.PathLike) -> Path:
    """Return a user-given data file.

    As given (absolute, or relative to the working directory) when it exists, else in the package as
    ``path``, ``config/<path>`` or ``config/plants/<path>`` (``config/plants/real.yaml`` or just
    ``real.yaml`` for a plant file).

    Raises FileNotFoundError naming the path.
    """
    p = Path(path).expanduser()
    if p.exists():
        return p
    if not p.is_absolute():
        for parts in (p.parts, ("config",) + p.parts, ("config", "plants") + p.parts):
            try:
                return share_path(*parts)
            except FileNotFoundError:
                continue
    raise FileNotFoundError(f"config file {str(path)!r}: not found (as given nor in the package)")
