"""ROS 2 adapter around MujocoPlant: node ``mujoco_sim``.

Topics (relative names):
  sub ``commands``      std_msgs/Float64MultiArray  joint torques (N m) ordered as ``joints``
  pub ``joint_states``  sensor_msgs/JointState      measured q, qd; effort = applied torque
  pub ``/clock``        rosgraph_msgs/Clock         simulation time (only if ``publish_clock``)

Modes:
  ``realtime``  a steady (wall) timer at ``control_rate_hz`` steps the physics to keep
                up with wall time, then publishes one measurement.
  ``lockstep``  publish /clock + joint_states, wait (spinning) until a new command
                arrives (and, with ``lockstep_residual_topic``, the policy's residual of
                that state while it answers) or ``lockstep_wait`` wall seconds pass, step one control
                period, repeat: runs as fast as the graph answers. Meant with
                ``publish_clock: true`` and ``use_sim_time: true`` on the other nodes.

Plant parameters (payload_mass, friction_scale, damping_scale, actuator_gain,
actuator_latency, sensor_noise_std) start from ``plant_file`` (empty = nominal) and
are overridden by parameters given explicitly; they can be changed live with
``ros2 param set /mujoco_sim payload_mass 1.0`` (validated, applied without a reset).

What the actuator does when commands stop is the ``sink`` parameter: ``hold``
(default) applies the last command forever, as ros2_control's
forward_command_controller does (it has no command timeout); ``timeout`` models
a sink with a command timeout: after ``command_timeout`` s of simulation time
without a command the plant gets zero torque (throttled warning).
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import List

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult,
)
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from residual_control.paths import resolve_file
from residual_control.robot.folder import load_robot
from residual_control.sim.plant import MujocoPlant, PlantParams
from residual_control.sim.sink_record import SinkRecorder

from residual_control.nodes.process import run_node
from residual_control.nodes.qos import CONTROL_QOS

# The record's base_action subscription: every sample, never dropped (see sim/sink_record.py).
RECORD_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)

CLOCK_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
)

#: Live-settable plant parameters: (description, low, high).
PLANT_PARAM_SPECS = {
    "payload_mass": ("payload mass at the tip (kg)", 0.0, 10.0),
    "friction_scale": ("multiplier on the nominal Coulomb joint friction", 0.0, 10.0),
    "damping_scale": ("multiplier on the nominal viscous joint damping", 0.0, 10.0),
    "actuator_gain": ("multiplier on the commanded torque", 0.01, 5.0),
    "actuator_latency": ("command delay (s), whole physics steps", 0.0, 0.1),
    "sensor_noise_std": ("std of Gaussian noise on measured positions (rad)", 0.0, 0.1),
}
MODES = ("realtime", "lockstep")
SINKS = ("hold", "timeout")  # what the actuator does when commands stop
MAX_CATCHUP_PERIODS = 5


def _float_desc(description: str, low: float, high: float, read_only: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(
        description=description, read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)],
    )


def _int_desc(description: str, low: int, high: int, read_only: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(
        description=description, read_only=read_only,
        integer_range=[IntegerRange(from_value=int(low), to_value=int(high), step=1)],
    )


def _desc(description: str, read_only: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only)


def sim_time_msg(t: float) -> TimeMsg:
    ns = int(round(t * 1e9))
    sec, nanosec = divmod(ns, 1_000_000_000)
    return TimeMsg(sec=int(sec), nanosec=int(nanosec))


class MujocoSimNode(Node):
    """Simulated arm: steps a MujocoPlant, publishes joint_states (and /clock)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("mujoco_sim", **kwargs)
        self.declare_parameter("robot", "", _desc(
            "robot folder (with robot.yaml) or a shipped robot's name; empty = the built-in arm", True))
        robot = load_robot(self.get_parameter("robot").value or None)
        self.declare_parameter("joints", list(robot.joints),
                               _desc("joint names; must equal the robot's used joints", read_only=True))
        self.declare_parameter("plant_file", "",
                               _desc("plant YAML (config/plants/*.yaml); empty = nominal plant", True))
        plant_file = self.get_parameter("plant_file").value
        base = (PlantParams.from_yaml(resolve_file(plant_file)) if plant_file
                else PlantParams(payload_mass=robot.payload_mass))
        values = {}
        for name, (description, low, high) in PLANT_PARAM_SPECS.items():
            values[name] = float(self.declare_parameter(
                name, float(getattr(base, name)),
                _float_desc(description + "; overrides plant_file; live-settable", low, high),
            ).value)
        params = base.replace(**values)  # the plant file's effects (joint_stiffness, ...) kept

        self.declare_parameter("physics_rate_hz", 1000.0,
                               _float_desc("MuJoCo physics rate (Hz)", 1000.0, 100000.0, True))
        self.declare_parameter("control_rate_hz", 100.0,
                               _float_desc("joint_states publication / control period rate (Hz)",
                                           1.0, 1000.0, True))
        self.declare_parameter("mode", "realtime", _desc("realtime | lockstep", True))
        self.declare_parameter("publish_clock", False,
                               _desc("publish /clock and stamp joint_states with simulation time", True))
        self.declare_parameter("command_timeout", 0.1,
                               _float_desc("simulated seconds without a command before zero torque",
                                           0.001, 60.0))
        self.declare_parameter("sink", "hold",
                               _desc("what the actuator does when commands stop: hold = the last command "
                                     "forever (forward_command_controller), timeout = zero torque after "
                                     "command_timeout; live-settable"))
        self.declare_parameter("lockstep_wait", 0.5,
                               _float_desc("lockstep: wall seconds to wait for a command before "
                                           "stepping anyway", 0.0, 60.0))
        self.declare_parameter("real_time_factor", 0.0,
                               _float_desc("lockstep: cap on simulated seconds per wall second "
                                           "(1 = never faster than real time, 0 = as fast as the graph "
                                           "answers)", 0.0, 1000.0))
        self.declare_parameter("seed", 0, _int_desc("sensor noise seed", 0, 2**31 - 1, True))
        self.declare_parameter("initial_positions", [float(x) for x in robot.home],
                               _desc("initial joint angles (rad), ordered as joints", True))
        self.declare_parameter("record_applied_topic", "",
                               _desc("with record_path: also record the mixer's applied residual from this "
                                     "topic (e.g. residual_mixer/applied_residual); empty = not", True))
        self.declare_parameter("lockstep_residual_topic", "",
                               _desc("lockstep: also wait (<= lockstep_wait) for the residual of each state on "
                                     "this topic (e.g. residual_action) before stepping, while the policy answers: "
                                     "the simulated loop then does not depend on the machine's load; "
                                     "empty = off", True))
        self.declare_parameter("record_path", "",
                               _desc("write every command received and every base_action seen to this file "
                                     "(residual_control.sim.sink_record); lockstep then also waits for the "
                                     "base action of each state; empty = off", True))

        self.joints: List[str] = list(self.get_parameter("joints").value)
        physics_rate = float(self.get_parameter("physics_rate_hz").value)
        control_rate = float(self.get_parameter("control_rate_hz").value)
        self.mode = str(self.get_parameter("mode").value)
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {list(MODES)}, found {self.mode!r}")
        if control_rate > physics_rate:
            raise ValueError(
                f"control_rate_hz: expected <= physics_rate_hz ({physics_rate}), found {control_rate}"
            )
        self.publish_clock = bool(self.get_parameter("publish_clock").value)
        self._command_timeout = float(self.get_parameter("command_timeout").value)
        self.sink = _sink(self.get_parameter("sink").value)
        self._lockstep_wait = float(self.get_parameter("lockstep_wait").value)
        self._real_time_factor = float(self.get_parameter("real_time_factor").value)

        self.plant = MujocoPlant(params, seed=int(self.get_parameter("seed").value),
                                 physics_dt=1.0 / physics_rate, robot=robot)
        if tuple(self.joints) != self.plant.joint_names:
            raise ValueError(
                f"joints: expected the model's joints {list(self.plant.joint_names)}, found {self.joints}"
            )
        n = len(self.joints)
        q0 = list(self.get_parameter("initial_positions").value)
        if len(q0) != n:
            raise ValueError(f"initial_positions: expected {n} values, found {len(q0)}")
        self.plant.reset(q0=q0)
        self.control_dt = 1.0 / control_rate

        self._command = np.zeros(n)
        self._command_time = 0.0  # simulation time of the last accepted command
        self._have_command = False
        self._new_command = False
        self.steps = 0

        self._state_pub = self.create_publisher(JointState, "joint_states", CONTROL_QOS)
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", CLOCK_QOS) if self.publish_clock else None
        self.create_subscription(Float64MultiArray, "commands", self._on_command, CONTROL_QOS)
        # Lockstep with the policy: the newest residual stamp seen; whether the policy answers (set by each
        # residual, cleared when one did not come within lockstep_wait).
        self._residual_ns: int | None = None
        self._residual_alive = False
        residual_topic = str(self.get_parameter("lockstep_residual_topic").value)
        self._wait_residual = bool(residual_topic) and self.mode == "lockstep"
        if self._wait_residual:
            self.create_subscription(JointState, residual_topic, self._on_residual, RECORD_QOS)
        record_path = str(self.get_parameter("record_path").value)
        self.recorder = SinkRecorder(record_path) if record_path else None
        if self.recorder is not None:
            self.create_subscription(JointState, "base_action", self.recorder.base, RECORD_QOS)
            applied_topic = str(self.get_parameter("record_applied_topic").value)
            if applied_topic:
                self.create_subscription(JointState, applied_topic, self.recorder.applied, RECORD_QOS)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._timer = None
        if self.mode == "realtime":
            self._steady = Clock(clock_type=ClockType.STEADY_TIME)
            self._wall_start = time.monotonic()
            self._timer = self.create_timer(self.control_dt, self._on_timer, clock=self._steady)
            self.publish_state()
        self.get_logger().info(
            f"mujoco_sim: {self.mode} mode, physics {physics_rate:g} Hz, control {control_rate:g} Hz, "
            f"publish_clock={self.publish_clock}, plant {params}"
        )

    # ------------------------------------------------------------ callbacks
    def _on_command(self, msg: Float64MultiArray) -> None:
        if self.recorder is not None:
            self.recorder.command(msg.data)
        data = np.asarray(msg.data, dtype=float)
        n = len(self.joints)
        if data.size != n or not np.all(np.isfinite(data)):
            self.get_logger().error(
                f"commands: expected {n} finite efforts ordered as {self.joints}, found "
                f"{data.size} value(s) {data.tolist()}; keeping the previous command",
                throttle_duration_sec=1.0,
            )
            return
        self._command = data
        self._command_time = self.plant.time
        self._have_command = True
        self._new_command = True

    def _on_residual(self, msg: JointState) -> None:
        ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        if self._residual_ns is None or ns > self._residual_ns:
            self._residual_ns = ns
        self._residual_alive = True  # the policy answers: wait for it again

    def _has_residual(self, state_ns: int) -> bool:
        return self._residual_ns is not None and self._residual_ns >= state_ns

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "sink" and p.value not in SINKS:
                return SetParametersResult(successful=False,
                                           reason=f"sink: expected one of {list(SINKS)}, found {p.value!r}")
        changes = {}
        for p in params:
            if p.name in PLANT_PARAM_SPECS:
                changes[p.name] = p.value
        try:
            new = self.plant.params.replace(**changes) if changes else None
        except (TypeError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if new is not None:
            self.plant.set_params(new)
            self.get_logger().info(f"plant parameters changed: {changes}")
        for p in params:
            if p.name == "command_timeout":
                self._command_timeout = float(p.value)
            elif p.name == "sink":
                self.sink = p.value
            elif p.name == "lockstep_wait":
                self._lockstep_wait = float(p.value)
            elif p.name == "real_time_factor":
                self._real_time_factor = float(p.value)
        return SetParametersResult(successful=True)

    def _on_timer(self) -> None:
        behind = (time.monotonic() - self._wall_start) - self.steps * self.control_dt
        periods = int(math.floor(behind / self.control_dt + 1e-9))
        if periods > MAX_CATCHUP_PERIODS:
            self.get_logger().warning(
                f"simulation behind wall time by {behind:.3f} s; dropping the backlog",
                throttle_duration_sec=5.0,
            )
            self._wall_start += (periods - MAX_CATCHUP_PERIODS) * self.control_dt
            periods = MAX_CATCHUP_PERIODS
        if periods <= 0:
            return
        for _ in range(periods):
            self.step_control_period()
        self.publish_state()

    # ------------------------------------------------------------- stepping
    def current_command(self) -> np.ndarray:
        if self.sink == "hold":  # zeros before the first command
            return self._command
        age = self.plant.time - self._command_time
        if age > self._command_timeout + 1e-9:
            what = "since the last command" if self._have_command else "without any command"
            self.get_logger().warning(
                f"commands: {age:.3f} s {what} (> command_timeout {self._command_timeout} s); "
                "applying zero torque",
                throttle_duration_sec=2.0,
            )
            return np.zeros(len(self.joints))
        return self._command

    def step_control_period(self) -> None:
        self.plant.step(self.current_command(), self.control_dt)
        self.steps += 1

    def publish_state(self) -> None:
        q, qd = self.plant.measure()
        msg = JointState()
        if self.publish_clock:
            stamp = sim_time_msg(self.plant.time)
            self._clock_pub.publish(ClockMsg(clock=stamp))
        else:
            stamp = self.get_clock().now().to_msg()
        msg.header.stamp = stamp
        if self.recorder is not None:
            self.recorder.state(stamp)
        msg.name = list(self.joints)
        msg.position = q.tolist()
        msg.velocity = qd.tolist()
        msg.effort = self.plant.applied_torque.tolist()
        self._state_pub.publish(msg)

    def run_lockstep(self, executor, ok) -> None:
        """Publish, wait for a new command (<= lockstep_wait wall s), step; until ``ok()`` is false.

        With ``real_time_factor`` > 0 the simulation never runs ahead of
        wall time times that factor: it runs in real time while the graph
        keeps up, and slows down (instead of starving the graph) when the
        machine is loaded.
        """
        start_wall = time.monotonic()
        start_sim = self.plant.time
        rec = self.recorder
        while ok():
            self._new_command = False
            self.publish_state()
            state_ns = int(round(self.plant.time * 1e9))
            deadline = time.monotonic() + self._lockstep_wait
            # Recording: while the base controller answers, also wait for its answer to this state;
            # with lockstep_residual_topic, while the policy answers, for its residual of this state.
            while ok() and (not self._new_command or (rec is not None and rec.base_alive
                                                      and not rec.has_base(state_ns))
                            or (self._wait_residual and self._residual_alive
                                and not self._has_residual(state_ns))):
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    if self._wait_residual and not self._has_residual(state_ns):
                        # A silent policy (killed, stalled, skipping): not waited for again until it answers.
                        self._residual_alive = False
                    if not self._new_command:
                        self.get_logger().warning(
                            f"lockstep: no command within lockstep_wait={self._lockstep_wait} s; "
                            "stepping anyway", throttle_duration_sec=5.0,
                        )
                    break
                executor.spin_once(timeout_sec=min(remaining, 0.1))
            executor.spin_once(timeout_sec=0.0)  # serve parameter requests etc.
            if rec is not None:
                rec.step(state_ns, self._new_command)
            if self._real_time_factor > 0.0:
                target = start_wall + (self.plant.time + self.control_dt - start_sim) / self._real_time_factor
                while ok() and (remaining := target - time.monotonic()) > 0.0:
                    executor.spin_once(timeout_sec=remaining)
            self.step_control_period()


def _sink(value) -> str:
    if value not in SINKS:
        raise ValueError(f"sink: expected one of {list(SINKS)}, found {value!r}")
    return value


def _spin(node: "MujocoSimNode", executor, ok) -> None:
    if node.mode == "lockstep":
        node.run_lockstep(executor, ok)
        return
    from residual_control.nodes.lean import LeanLoop, unavailable
    from residual_control.nodes.process import EXECUTOR_ENV

    if unavailable() or os.environ.get(EXECUTOR_ENV, "lean") != "lean":
        while ok():
            executor.spin_once()
        return
    # Realtime on the lean loop: the control periods are kept by deadline here instead of by the
    # steady timer (one executor turn per period at 1 kHz costs more than the physics); commands,
    # parameters and the rest are taken in between.
    node._timer.cancel()
    loop = LeanLoop(node, executor)
    try:
        while ok():
            remaining = node._wall_start + (node.steps + 1) * node.control_dt - time.monotonic()
            if remaining > 0.0:
                loop.spin_once(min(remaining, 0.05))
            else:
                node._on_timer()
    finally:
        loop.close()


def main(args=None) -> int:
    return run_node(MujocoSimNode, args, fatal=(ValueError, FileNotFoundError), spin=_spin)


if __name__ == "__main__":
    sys.exit(main())
