"""ament_python package definition for residual_control."""
import glob
import os

from setuptools import find_packages, setup

package_name = "residual_control"


def tree(folder):
    """data_files entries installing every file under folder into share/<package>/folder."""
    entries = {}
    for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True):
        if os.path.isfile(path):
            entries.setdefault(os.path.join("share", package_name, os.path.dirname(path)), []).append(path)
    return sorted(entries.items())


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("description"),
        *tree("models"),
        *tree("robots"),
    ],
    # ROS 2 itself (rclpy and messages) comes from apt on robots and from
    # requirements/ros-jazzy.txt in the development environment: never here.
    # mujoco: the nominal model's default backend (model.backend: mujoco) for pd_gravity, computed_torque
    # and the mixer's damp_gravity, on a robot too, not only the simulator.
    install_requires=["setuptools", "numpy", "PyYAML", "onnxruntime", "mujoco"],
    extras_require={
        "sim": ["mujoco", "matplotlib"],
        "train": ["torch", "gymnasium", "stable-baselines3", "mujoco", "matplotlib", "tqdm"],
        "test": ["pytest", "hypothesis"],
        "logs": ["rosbags"],
        "mpc": ["osqp", "scipy"],
        "ray": ["ray"],
    },
    zip_safe=True,
    maintainer="residual_control maintainers",
    maintainer_email="residual-control@users.noreply.github.com",
    description="Learned residual policies on top of a trusted base controller, run safely on ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "base_controller = residual_control.nodes.base_controller:main",
            "residual_policy = residual_control.nodes.residual_policy:main",
            "residual_mixer = residual_control.nodes.residual_mixer:main",
            "residual_controller = residual_control.nodes.residual_controller:main",
            "mujoco_sim = residual_control.sim.mujoco_sim_node:main",
            "reference_publisher = residual_control.sim.reference_node:main",
            "perception = residual_control.sim.perception_node:main",
            "residual_recorder = residual_control.nodes.recorder:main",
            "residual-control = residual_control.cli:main",
        ],
    },
)
