"""``--robot DIR`` of the commands: which robot folder a run is on, and its defaults.

A command given ``--robot`` takes the robot's params file, plant, reference and model where the
user gives none; without it, the robot the params file names (``robot``), else the built-in arm.
"""
from __future__ import annotations

import argparse


def add_robot_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="",
                   help="robot folder (with robot.yaml) or a shipped robot's name (default: the params file's "
                        "robot, else the built-in arm planar2)")


def robot_of(args):
    """Return the RobotSpec of a command's arguments (``--robot``, else ``--params-file``'s robot)."""
    from .. import params_file as pf
    from ..robot.folder import load_robot

    if getattr(args, "robot", ""):
        return load_robot(args.robot)
    path = getattr(args, "params_file", "") or getattr(args, "params", "")
    if path:
        name = pf.node_params(pf.load(path), "base_controller").get("robot")
        return load_robot(name or None)
    return load_robot(None)
