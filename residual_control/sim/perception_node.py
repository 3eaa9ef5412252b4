"""ROS 2 node ``perception``: a simulated camera estimate of the payload.

Publishes ``perception`` (std_msgs/Float64MultiArray, one entry per name in
``features``, in that order) at ``rate_hz`` on the node clock (sim time aware).
Supported features: ``payload_mass`` = true payload (param ``payload_mass``,
default from ``plant_file``, else nominal 0.2 kg) + N(0, noise_std^2), clamped
at >= 0. ``enabled`` (live: ``ros2 param set /perception enabled false``) stops
publishing, which models a perception loss. ``payload_mass`` and ``noise_std``
are live-settable too (e.g. together with the simulator's payload_mass).
"""
from __future__ import annotations

import sys

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from residual_control.paths import resolve_file
from residual_control.sim.plant import PlantParams

from residual_control.nodes.process import run_node
from residual_control.nodes.qos import CONTROL_QOS

SUPPORTED_FEATURES = ("payload_mass",)


def _range(description: str, low: float, high: float, read_only: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(
        description=description, read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)],
    )


class PerceptionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        self.features = list(self.declare_parameter(
            "features", ["payload_mass"],
            ParameterDescriptor(description=f"published features, in order; supported: "
                                f"{list(SUPPORTED_FEATURES)}", read_only=True)).value)
        unknown = [f for f in self.features if f not in SUPPORTED_FEATURES]
        if unknown or not self.features:
            raise ValueError(
                f"features: expected names among {list(SUPPORTED_FEATURES)}, found {self.features}"
            )
        plant_file = self.declare_parameter(
            "plant_file", "",
            ParameterDescriptor(description="plant YAML giving the default true payload_mass",
                                read_only=True)).value
        base = PlantParams.from_yaml(resolve_file(plant_file)) if plant_file else PlantParams()
        self.declare_parameter("payload_mass", float(base.payload_mass),
                               _range("true payload mass (kg); overrides plant_file; live", 0.0, 10.0))
        self.declare_parameter("noise_std", 0.05,
                               _range("std of the Gaussian estimate noise (kg); live", 0.0, 10.0))
        rate = float(self.declare_parameter(
            "rate_hz", 30.0, _range("publication rate (Hz)", 0.1, 1000.0, read_only=True)).value)
        self.declare_parameter("enabled", True, ParameterDescriptor(
            description="publish estimates; false = perception loss (live)"))
        seed = int(self.declare_parameter("seed", 0, ParameterDescriptor(
            description="noise seed", read_only=True,
            integer_range=[IntegerRange(from_value=0, to_value=2**31 - 1, step=1)])).value)
        self._rng = np.random.default_rng(seed)
        self._enabled = None
        self._pub = self.create_publisher(Float64MultiArray, "perception", CONTROL_QOS)
        self._timer = self.create_timer(1.0 / rate, self._on_timer)

    def estimate(self) -> np.ndarray:
        mass = float(self.get_parameter("payload_mass").value)
        std = float(self.get_parameter("noise_std").value)
        noisy = mass + (self._rng.normal(0.0, std) if std > 0 else 0.0)
        values = {"payload_mass": max(0.0, noisy)}
        return np.array([values[f] for f in self.features])

    def _on_timer(self) -> None:
        enabled = bool(self.get_parameter("enabled").value)
        if enabled != self._enabled:
            self.get_logger().info("perception enabled" if enabled else "perception disabled (loss)")
            self._enabled = enabled
        if not enabled:
            return
        self._pub.publish(Float64MultiArray(data=self.estimate().tolist()))


def main(args=None) -> int:
    return run_node(PerceptionNode, args, fatal=(ValueError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
