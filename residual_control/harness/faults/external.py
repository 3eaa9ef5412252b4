"""The ``external`` family: residual_policy and residual_mixer on top of a base controller outside the package.

The base is :mod:`.external_base`, a separate process publishing the robot's base law unstamped
(std_msgs/Float64MultiArray in the order of ``joints``) on its own topic, which the two nodes read
with ``base_action_type: float64_multi_array`` and the remapping ``base_action:=external_base/commands``
(docs/external_base.md). The probe plays the robot (joint_states, reference, perception) as in the
``policy`` family and records the external base's output as the base actions every command is judged
against (by receipt time: they have no stamp).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .common import _ERROR, Context, Trial, scenario
from .probe_driven import Bench
from .relay import _diag_int

EXTERNAL_TOPIC = "external_base/commands"


def _external_spec_class():
    from ..graph import NodeSpec

    class ExternalBaseSpec(NodeSpec):
        """The external base's process: not a node of the package (harness/faults/external_base.py)."""

        def command(self, overlay_dir=None) -> list[str]:
            return [sys.executable, "-m", "residual_control.harness.faults.external_base",
                    "--params-file", str(self.params_files[0]), "--type", str(self.params["type"]),
                    "--topic", EXTERNAL_TOPIC, "--rate-hz", str(self.params["rate_hz"]),
                    "--ros-args", "--log-level", self.log_level]

    return ExternalBaseSpec


class ExternalBench(Bench):
    """residual_policy + residual_mixer against the external base, driven by a probe on wall time."""

    def __init__(self, ctx: Context, label: str, params_file: str, message_type: str = "float64_multi_array",
                 rate_hz: float = 50.0) -> None:
        import rclpy
        from std_msgs.msg import Float64MultiArray

        from ..graph import Graph, NodeSpec
        from ..probe import LOSSLESS_QOS, Probe, Sample
        from .common import RELAY_RATE_HZ

        self.ctx = ctx
        self.rclpy = rclpy
        self.joints = ctx.joints
        self.params_file = params_file
        self.config = ctx.mixer_config(params_file)
        self.period = 1.0 / RELAY_RATE_HZ
        self.use_sim_time = False
        self.probe = Probe(self.joints, name=f"faults_probe_{label}", record_qos=LOSSLESS_QOS)
        self.clock_pub = None
        self.sim_t = 1000.0
        remaps = {"base_action": EXTERNAL_TOPIC}
        self.specs = {
            "external_base": _external_spec_class()("external_base", [params_file],
                                                    {"type": message_type, "rate_hz": rate_hz},
                                                    name="external_base"),
            "residual_mixer": NodeSpec("residual_mixer", [params_file], {}, remaps),
            "residual_policy": NodeSpec("residual_policy", [params_file], {}, remaps),
        }
        self.graph = Graph(list(self.specs.values()), log_dir=ctx.logs(label))
        self.with_policy = True
        self.respond = False
        self._init_drive(ctx)
        n = len(self.joints)
        self.rogue_pub = self.probe.create_publisher(Float64MultiArray, EXTERNAL_TOPIC, 10)

        def on_external(msg) -> None:
            # The base actions the commands are judged against, at their receipt: the mixer stamps
            # them so. The probe's own rogue messages (wrong length, non-finite) are no base action.
            values = np.asarray(msg.data, dtype=float)
            if values.size == n and np.all(np.isfinite(values)):
                self.probe.rec.base.append(Sample(time.monotonic(), self.probe.ros_now(), None, list(self.joints),
                                                  values))

        self.probe.create_subscription(Float64MultiArray, EXTERNAL_TOPIC, on_external, LOSSLESS_QOS)


def _external_params(ctx: Context, behavior: str) -> str:
    return ctx._write(f"external_{behavior}.yaml", {
        "residual_mixer": dict(residual_timeout=0.1, observation_timeout=0.3, base_timeout=0.3,
                               recovery_hold_time=0.3, recovery_ramp_time=0.6, diagnostics_period=0.2,
                               base_stale_behavior=behavior, base_action_type="float64_multi_array"),
        "residual_policy": dict(control_rate_hz=50.0, perception_timeout=0.25, model_path=ctx.relay_models["good"],
                                diagnostics_period=0.2, base_action_type="float64_multi_array"),
    })


def _external_trial(ctx: Context, trial: int, behavior: str, body) -> Trial:
    res = Trial()
    b = ExternalBench(ctx, f"external_{behavior}_trial{trial}", _external_params(ctx, behavior))
    try:
        try:
            b.wait_nominal(120.0)
        except Exception as exc:
            res.fail(f"graph did not come up: {exc}")
            return res
        m = b.mark()
        body(b, res)
        b.judge(res, m)
        try:
            b.check_alive()
        except RuntimeError as exc:
            res.fail(f"a node died: {str(exc)[:500]}")
    finally:
        b.close()
    return res


def _died(behavior: str):
    def body(b: ExternalBench, res: Trial) -> None:
        p = b.probe
        cfg = b.config
        t_f = b.now()
        wall_f = time.monotonic()
        b.dead.add("external_base")
        b.graph["external_base"].kill9()
        # Judged by receipt: the watchdog fires base_timeout after the last base action received,
        # checked every base_timeout / 2, + a period (the last one may have been on its way).
        b.fallback_latency(res, t_f, modes=("base_fault",),
                           bound=cfg.base_timeout + max(cfg.base_timeout / 2, 0.002) + 2 * b.period)
        b.run_until(lambda: any(s.level == _ERROR and s.name == "residual_mixer: mode"
                                for t, s in p.rec.diagnostics if t >= wall_f), 10.0, "an ERROR on /diagnostics")
        b.run_for(0.5)
        p.drain()
        hit = next((t for t, _, x in p.rec.modes if t >= wall_f and x.startswith("base_fault")), None)
        during = [c for c in p.rec.commands if hit is not None and c.t > hit + 0.2]
        res.notes["commands_while_base_dead"] = len(during)
        if behavior == "stop" and during:
            res.fail(f"stop: {len(during)} commands published while the external base was dead")
        if behavior != "stop" and not during:
            res.fail(f"{behavior}: no command published while the external base was dead")
        # Rogue unstamped base actions while it is dead: refused, counted, named.
        before = _diag_int(p, "residual_mixer: mode", "rejected_base_actions")
        n = len(b.joints)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            b.tick()
            b.rogue_pub.publish(b.rogue_pub.msg_type(data=[0.1] * (n + 1)))
            b.rogue_pub.publish(b.rogue_pub.msg_type(data=[float("nan")] + [0.1] * (n - 1)))
        b.run_for(0.5)
        rejected = _diag_int(p, "residual_mixer: mode", "rejected_base_actions") - before
        res.notes["rejected_base_actions"] = rejected
        reasons = {next((kv.value for kv in s.values if kv.key == "last_rejection"), "")
                   for _, s in p.rec.diagnostics if s.name == "residual_mixer: mode"}
        if rejected <= 0 or not any("Float64MultiArray" in r for r in reasons):
            res.fail(f"rogue Float64MultiArray base actions not refused: {rejected} rejections, reasons "
                     f"{sorted(reasons)[-2:]}")
        if any(not np.all(np.isfinite(c.values)) for c in p.rec.commands):
            res.fail("a non-finite command")
        # The external base is back: ramped recovery.
        t_back = time.monotonic()
        b.dead.discard("external_base")
        b.graph.start(b.specs["external_base"])
        b.recovery(res, t_back)
    return body


@scenario("external_base_died", "external", "an external base controller (a separate process publishing "
          "std_msgs/Float64MultiArray, unstamped, base_action_type float64_multi_array) killed: the mixer "
          "goes to base_fault within base_timeout + watchdog period (by receipt time), ERROR on /diagnostics, "
          "damp commands go on; rogue arrays (wrong length, NaN) refused and counted; restarted: ramped "
          "recovery", quick=True)
def sc_external_base_died(ctx: Context, trial: int) -> Trial:
    return _external_trial(ctx, trial, "damp", _died("damp"))
