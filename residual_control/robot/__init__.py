"""A robot as data: its description compiled for the package, and its nominal rigid-body dynamics."""
from .description import (
    CompiledRobot,
    DescriptionError,
    compile_robot,
    description_kind,
    urdf_joint_limits,
)
from .dynamics import (
    BACKENDS,
    MujocoDynamics,
    PinocchioDynamics,
    make_dynamics,
    pinocchio_available,
)

__all__ = [
    "BACKENDS",
    "MujocoDynamics",
    "PinocchioDynamics",
    "make_dynamics",
    "pinocchio_available",
    "CompiledRobot",
    "DescriptionError",
    "compile_robot",
    "description_kind",
    "urdf_joint_limits",
]
