"""The probe-driven graph (``Bench``) of the ``relay``, ``clock`` and ``policy`` families.

base_controller + residual_mixer (+ residual_policy) driven by a probe on wall (or probe) time.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .common import (RELAY_RATE_HZ, WALL_SLACK, Context, Trial, _first_mode_after, _latency, _Timeout,
                     ramp_check)


def reference_near(home, lower, upper, bound=None) -> np.ndarray:
    """Return the probe's constant reference: ``home`` moved by +0.1, -0.2, +0.1, ... rad, inside [lower, upper].

    ``bound`` (rad per joint): where a step is larger, half the bound instead. The probe-driven graph
    uses g * eps / kp (``step_bound``): its base action kp (q_ref - q) + gravity(q) then differs from
    the mixer's safe stop at the same pose (gravity(q), held still) by at most the residual bound, so a
    damp command next to a base action is judged safe, not a violation. The built-in arm's home
    [0.3, 1.2] gives [0.4, 1.0].
    """
    home = np.asarray(home, dtype=float)
    step = np.array([0.1 if k % 2 == 0 else -0.2 for k in range(home.size)])
    if bound is not None:
        b = np.asarray(bound, dtype=float)
        step = np.where(np.abs(step) <= b, step, np.sign(step) * 0.5 * b)
    return np.clip(home + step, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float))


def step_bound(params) -> np.ndarray:
    """Return g * eps / kp per joint (rad; inf where kp is 0) from a loaded params file."""
    from ...params_file import node_params

    mixer = node_params(params, "residual_mixer")
    kp = np.asarray(node_params(params, "base_controller")["kp"], dtype=float)
    eps = float(mixer["residual_gain"]) * np.asarray(mixer["residual_limit"], dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(kp > 0, eps / np.where(kp > 0, kp, 1.0), np.inf)


# ====================================================================== probe-driven harness
class Bench:
    """base_controller + residual_mixer (+ residual_policy) driven by a probe on wall (or probe) time."""

    def __init__(self, ctx: Context, label: str, with_policy: bool = False, use_sim_time: bool = False,
                 params_file: str | None = None) -> None:
        import rclpy
        from rclpy.parameter import Parameter
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock as ClockMsg
        from sensor_msgs.msg import JointState

        from ..graph import Graph, NodeSpec
        from ..probe import LOSSLESS_QOS, Probe

        self.ctx = ctx
        self.rclpy = rclpy
        self.joints = ctx.joints
        self.params_file = params_file or ctx.relay_params
        self.config = ctx.mixer_config(self.params_file)
        self.period = 1.0 / RELAY_RATE_HZ
        self.use_sim_time = use_sim_time
        overrides = [Parameter("use_sim_time", value=True)] if use_sim_time else []
        self.probe = Probe(self.joints, name=f"faults_probe_{label}", parameter_overrides=overrides,
                           record_qos=LOSSLESS_QOS)
        self.clock_pub = None
        self.sim_t = 1000.0
        if use_sim_time:
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
            self.clock_pub = self.probe.create_publisher(ClockMsg, "/clock", qos)
            self._clock_msg = ClockMsg
        nodes = ["base_controller", "residual_mixer"] + (["residual_policy"] if with_policy else [])
        common = {"use_sim_time": use_sim_time}
        self.specs = {n: NodeSpec(n, [self.params_file], dict(common)) for n in nodes}
        self.graph = Graph(list(self.specs.values()), log_dir=ctx.logs(label))
        self.with_policy = with_policy
        # The probe as the residual policy (relay harness): answer every base action.
        self.respond = not with_policy
        self._init_drive(ctx)
        if self.respond:
            self.probe.create_subscription(JointState, "base_action", self._on_base, 10)

    def _init_drive(self, ctx: Context) -> None:
        """Set what the probe publishes as the robot side: the residual it fakes, the pose, perception."""
        self.residual_names = list(self.joints)
        self.residual_values = list(ctx.const_residual)
        self.residual_stamp: Callable | None = None  # f(base stamp msg) -> stamp msg
        self.publish_states = True
        self.publish_perception = True
        self._next = time.monotonic()
        self.dead: set = set()
        # The robot at its home pose, asked to hold a pose near it.
        self.q = np.array(ctx.home, dtype=float)
        self.q_ref = reference_near(ctx.home, ctx.robot.workspace_lower, ctx.robot.workspace_upper,
                                    step_bound(ctx.params))
        self.perception = [0.5] * len(ctx.features)

    # ---------------------------------------------------------------- driving
    def _on_base(self, msg) -> None:
        if not self.respond:
            return
        stamp = msg.header.stamp if self.residual_stamp is None else self.residual_stamp(msg.header.stamp)
        self.probe.publish_residual(self.residual_names, self.residual_values, stamp=stamp)

    def stamp(self):
        from builtin_interfaces.msg import Time

        if self.use_sim_time:
            ns = int(round(self.sim_t * 1e9))
            return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        return self.probe.get_clock().now().to_msg()

    def now(self) -> float:
        """Return the graph's clock now (s)."""
        return self.sim_t if self.use_sim_time else self.probe.ros_now()

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = max(self._next + self.period, now - self.period)
            if self.use_sim_time:
                self.sim_t += self.period
                self.clock_pub.publish(self._clock_msg(clock=self.stamp()))
            p = self.probe
            msg = p.ref_pub.msg_type(name=list(self.joints)[::-1], position=self.q_ref[::-1].tolist(),
                                     velocity=[0.0] * len(self.joints))
            msg.header.stamp = self.stamp()
            p.ref_pub.publish(msg)
            if self.with_policy and self.publish_perception:
                p.publish_perception(self.perception)
            if self.publish_states:
                p.publish_state(self.q, np.zeros(len(self.joints)), stamp=self.stamp())
        self.rclpy.spin_once(self.probe, timeout_sec=0.002)

    def run_until(self, predicate, timeout: float, what: str = "") -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            if predicate():
                return True
        ok = bool(predicate())
        if not ok and what:
            raise _Timeout(f"timed out after {timeout:.0f} s waiting for {what}")
        return ok

    def run_for(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    def check_alive(self) -> None:
        self.graph.check_alive(ignore=self.dead)

    def wait_nominal(self, timeout: float = 90.0) -> None:
        """Until the mixer is nominal, judged after handling every report already waiting.

        The probe's latched mode can be one transition behind: between scenarios the harness
        stops ticking while it checks the last one, the base action goes stale meanwhile, and
        the mixer's base_fault report may still be waiting when the next scenario looks.
        """
        def ok():
            self.check_alive()
            return self.probe.mode == "nominal"
        deadline = time.monotonic() + timeout
        while True:
            self.run_until(ok, max(deadline - time.monotonic(), 0.0), "nominal")
            self.probe.drain(0.1)
            if ok():
                return

    # ---------------------------------------------------------------- services, ticking meanwhile
    def _call(self, client, request, timeout: float = 20.0):
        if not self.run_until(client.service_is_ready, timeout):
            raise _Timeout(f"{client.srv_name}: service not available within {timeout} s")
        future = client.call_async(request)
        if not self.run_until(future.done, timeout):
            raise _Timeout(f"{client.srv_name}: no answer within {timeout} s")
        return future.result()

    def set_param(self, node: str, name: str, value) -> tuple[bool, str]:
        from rcl_interfaces.msg import Parameter as ParameterMsg
        from rcl_interfaces.srv import SetParameters

        from ..probe import to_parameter_value

        client = self.probe._client(node, SetParameters, "set_parameters")
        req = SetParameters.Request(parameters=[ParameterMsg(name=name, value=to_parameter_value(value))])
        r = self._call(client, req).results[0]
        return r.successful, r.reason

    def get_param(self, node: str, name: str):
        from rcl_interfaces.srv import GetParameters

        from ..probe import from_parameter_value

        client = self.probe._client(node, GetParameters, "get_parameters")
        return from_parameter_value(self._call(client, GetParameters.Request(names=[name])).values[0])

    # ---------------------------------------------------------------- judging
    def mark(self) -> dict:
        r = self.probe.rec
        return {"cmd": len(r.commands), "wall": time.monotonic(), "ros": self.now()}

    def judge(self, res: Trial, m: dict) -> None:
        rec = self.probe.rec
        cmds = rec.commands[m["cmd"]:]
        from ..closed_loop import check_commands
        checks = check_commands(cmds, list(rec.base), self.joints, self.config, self.config.base_stale_behavior)
        res.violations += int(checks["total"])
        res.commands += len(cmds)
        if checks["total"]:
            res.notes["violation_breakdown"] = checks

    def fallback_latency(self, res: Trial, t_f: float, modes=("fallback",), bound: float | None = None) -> None:
        p = self.probe
        self.run_until(lambda: _first_mode_after(p.rec.mixer_modes, t_f, modes) is not None, 30.0,
                       f"{'/'.join(modes)} after the fault")
        res.fallback_latency_s, note = _latency(p.rec.mixer_modes, t_f, modes)
        if note:
            res.notes["latency_note"] = note
            res.not_measured = note
            res.fallback_latency_s = None
            return
        res.bound_s = (bound if bound is not None else self.config.residual_timeout + 2 * self.period) + WALL_SLACK
        if res.fallback_latency_s > res.bound_s + 1e-9:
            res.fail(f"{modes[0]} {res.fallback_latency_s:.3f} s after the fault (bound {res.bound_s:.3f} s, "
                     f"incl. {WALL_SLACK} s wall-clock slack)")

    def recovery(self, res: Trial, since_wall: float, ramp: bool = True) -> None:
        try:
            self.run_until(lambda: self.probe.mode == "nominal"
                           and (not ramp or any(t >= since_wall and x.startswith("nominal")
                                                for t, _, x in self.probe.rec.modes)),
                           60.0, "nominal after the fault cleared")
        except _Timeout as exc:
            res.recovered = False
            res.fail(str(exc))
            return
        self.run_for(0.1)
        if ramp:
            ok, why, info = ramp_check(self.probe.rec.applied, self.ctx.const_residual, self.config.residual_limit,
                                       since_wall, self.probe.rec.modes, self.config.residual_gain)
            res.notes["ramp"] = info
            res.recovered = ok
            if not ok:
                res.fail(why)
        else:
            res.recovered = True

    def close(self) -> None:
        self.graph.stop()
        self.probe.destroy_node()
