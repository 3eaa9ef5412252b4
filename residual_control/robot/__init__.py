"""A robot as data: its description compiled for the package, and its nominal rigid-body dynamics."""
from .description import (
    CompiledRobot,
    DescriptionError,
    compile_robot,
    description_kind,
    urdf_joint_limits,
)

__all__ = [
    "CompiledRobot",
    "DescriptionError",
    "compile_robot",
    "description_kind",
    "urdf_joint_limits",
]
