"""MuJoCo simulation of the residual_control arm (plant, references, ROS 2 adapters).

The pure-Python parts (``plant``, ``trajectories``) never import rclpy; the
``*_node`` modules are thin rclpy adapters around them. Their data files are
found by residual_control.paths.
"""
from residual_control.paths import description_path

__all__ = ["description_path"]
