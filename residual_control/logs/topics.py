"""The topics a recording of the running graph holds (relative names, resolved in the graph's namespace)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoggedTopic:
    """One recorded topic: its name relative to the graph's namespace, its ROS 2 type, whether replay needs it."""

    name: str
    msgtype: str
    required: bool
    what: str


#: Every topic a recording holds, in the order ``record --print-topics`` prints them. ``required``: the
#: training side (replay, fine-tune) refuses a bag without it.
TOPICS: tuple[LoggedTopic, ...] = (
    LoggedTopic("joint_states", "sensor_msgs/msg/JointState", True, "measured q, qd (the robot)"),
    LoggedTopic("reference", "sensor_msgs/msg/JointState", True, "q_ref, qd_ref (the planner)"),
    LoggedTopic("commands", "std_msgs/msg/Float64MultiArray", True, "the torque sent to the actuators (mixer)"),
    LoggedTopic("residual_mixer/applied_residual", "sensor_msgs/msg/JointState", True,
                "the residual the mixer added, stamped with its base action's stamp"),
    LoggedTopic("base_action", "sensor_msgs/msg/JointState", False, "a_base (base controller)"),
    LoggedTopic("residual_action", "sensor_msgs/msg/JointState", False, "the policy's residual before the mixer"),
    LoggedTopic("perception", "std_msgs/msg/Float64MultiArray", False, "perception features"),
    LoggedTopic("residual_mixer/mode", "std_msgs/msg/String", False, "the mixer's mode on each transition"),
    LoggedTopic("expert_action", "sensor_msgs/msg/JointState", False,
                "an expert's torque (teleoperation, an optimised controller): imitated when present"),
)

#: The custom metadata keys a recording writes into the bag's metadata.yaml (rosbag2 ``custom_data``).
META_MODEL_SHA256 = "residual_control.model_sha256"
META_MODEL_PATH = "residual_control.model_path"
META_PARAMS = "residual_control.params_yaml"
META_ROBOT = "residual_control.robot"
META_JOINTS = "residual_control.joints"
META_FORMAT = "residual_control.format"
FORMAT_VERSION = "1"
