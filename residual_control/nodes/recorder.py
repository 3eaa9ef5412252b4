"""residual_recorder node: a rosbag2 recording of the running graph (``residual-control record``).

Subscribes with ``raw=True`` to every topic of
:data:`residual_control.logs.topics.TOPICS` in its namespace (the mixer's
private topics under ``mixer_node``: ``residual_mixer``, or
``residual_controller`` for the fused node) and writes the CDR bytes as
received, stamped with the receipt time on the node's clock (simulated time
with ``use_sim_time``), through :class:`residual_control.logs.bag.BagWriter`.

Parameters: ``out`` (the bag folder; empty: ``residual_control_<UTC time>``
in the working folder), ``storage`` (``mcap`` or ``sqlite3``),
``params_file`` (its text goes into the bag's metadata, and its joints),
``model_path`` (its sha256 goes into the metadata; empty: the params file's
``residual_policy.model_path``, else the robot's model), ``robot``,
``mixer_node``. The bag is closed (metadata.yaml and the MCAP summary
written) when the node is destroyed, which :func:`run_node` does after
SIGINT or SIGTERM.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..core.errors import ConfigError
from ..logs.bag import STORAGES, BagError, BagWriter, recording_metadata
from ..logs.topics import TOPICS
from .process import run_node

#: Deeper than the controllers' depth 1: a recorder must not drop a sample because it was busy writing.
RECORD_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
#: The mixer's mode is latched: a late recorder still gets the current one.
MODE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _message_class(msgtype: str):
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _params_info(params_file: str) -> tuple[str | None, list, str, str]:
    """(text, joints, model_path, robot) of a params file ('' / [] where it says nothing)."""
    if not params_file:
        return None, [], "", ""
    from ..params_file import load, node_params, section

    try:
        text = Path(params_file).read_text(encoding="utf-8")
        params = load(params_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"params_file: expected a readable ROS 2 params file, found {params_file!r} ({exc})") \
            from None
    joints = section(params, "/**").get("joints") or node_params(params, "residual_mixer", defaults=False).get(
        "joints") or []
    model = str(node_params(params, "residual_policy", defaults=False).get("model_path") or "")
    robot = str(node_params(params, "base_controller", defaults=False).get("robot") or "")
    return text, [str(j) for j in joints], model, robot


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("residual_recorder", **kwargs)
        out = str(self.declare_parameter("out", "").value)
        storage = str(self.declare_parameter("storage", "mcap").value)
        params_file = str(self.declare_parameter("params_file", "").value)
        model_path = str(self.declare_parameter("model_path", "").value)
        robot = str(self.declare_parameter("robot", "").value)
        mixer_node = str(self.declare_parameter("mixer_node", "residual_mixer").value).strip("/")
        if storage not in STORAGES:
            raise ConfigError(f"storage: expected one of {list(STORAGES)}, found {storage!r}")
        if not mixer_node or "/" in mixer_node:
            raise ConfigError(f"mixer_node: expected a node name such as residual_mixer, found {mixer_node!r}")
        text, joints, params_model, params_robot = _params_info(params_file)
        robot = robot or params_robot
        if not model_path:
            from .policy_io import robot_default_model

            model_path = params_model or robot_default_model(robot)
        if not out:
            out = time.strftime("residual_control_%Y%m%d_%H%M%S", time.gmtime())
        robot_name = robot
        if robot:
            try:
                from ..robot.folder import load_robot

                robot_name = load_robot(robot).name
            except Exception:  # a name the recording keeps as given
                robot_name = robot
        meta = recording_metadata(model_path=model_path, params_text=text, robot=robot_name, joints=joints)
        try:
            self.writer = BagWriter(out, storage=storage, custom_data=meta)
        except BagError as exc:
            raise ConfigError(f"out: {exc}") from None
        self.messages = 0
        self._subs = []
        for topic in TOPICS:
            name = topic.name
            if name.startswith("residual_mixer/"):
                name = mixer_node + name[len("residual_mixer"):]
            qos = MODE_QOS if name.endswith("/mode") else RECORD_QOS
            full = self.resolve_topic_name(name)
            self.writer.add_topic(full, topic.msgtype)
            self._subs.append(self.create_subscription(_message_class(topic.msgtype), name, self._writer_of(full),
                                                       qos, raw=True))
        self.get_logger().info(f"recording {[s.topic_name for s in self._subs]} to {out} ({storage}), "
                               f"model sha256 {meta['residual_control.model_sha256'][:12]}")

    def _writer_of(self, topic: str):
        def write(data: bytes) -> None:
            if self.writer.closed:
                return
            self.writer.write(topic, self.get_clock().now().nanoseconds, data)
            self.messages += 1
        return write

    def close(self) -> None:
        if not self.writer.closed:
            self.writer.close()
            self.get_logger().info(f"closed {self.writer.path}: {self.messages} messages {self.writer.counts}")

    def destroy_node(self):
        self.close()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
