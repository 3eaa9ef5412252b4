"""Locate the package's data (config/, models/, description/, launch/).

In a source checkout (the development environment) the data sits next to the
Python package; after a colcon build it is in share/residual_control.
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
