"""Random fixed-base serial chains (URDF text) for the tests: see residual_control.harness.chains."""
from residual_control.harness.chains import (  # noqa: F401
    AXES,
    random_chain_urdf,
    random_inertia,
    write_box_stl,
    write_chain_package,
)

__all__ = ["AXES", "random_chain_urdf", "random_inertia", "write_box_stl", "write_chain_package"]
