"""The ``relay`` family: the probe plays the robot and the residual policy.

Rogue residuals and base actions (content, names, stamps, bursts) and lost joint states.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .common import WALL_SLACK, _ERROR, Trial, scenario, unknown_joint
from .probe_driven import Bench


def _relay_injection(content, expect_fallback: bool, stamp_fn=None, hold: float = 0.6):
    """Return a trial: the probe-as-policy publishes the rogue ``content(joints, da)`` = (names, values).

    Stamped by ``stamp_fn``, instead of the valid residual ``da`` on the robot's ``joints``.
    """
    def run(b: Bench, res: Trial) -> None:
        names, values = content(list(b.joints), list(b.ctx.const_residual))
        b.wait_nominal()
        m = b.mark()
        p = b.probe
        rejected_before = _diag_int(p, "residual_mixer: mode", "rejected_residuals")
        t_f = b.now()
        b.residual_names, b.residual_values, b.residual_stamp = list(names), list(values), stamp_fn
        if expect_fallback:
            b.fallback_latency(res, t_f)
        b.run_for(hold)
        mode_texts = [x for t, _, x in p.rec.modes if t >= m["wall"]]
        if not expect_fallback:
            b.run_for(0.3)  # a diagnostics period
            rejected = _diag_int(p, "residual_mixer: mode", "rejected_residuals") - rejected_before
            res.notes["rejected_residuals"] = rejected
            bad = [x for x in mode_texts if x.startswith("fallback: residual:")]
            if rejected or bad:
                res.fail(f"valid residual rejected: {rejected} rejections, modes {bad[:2]}")
            if b.probe.mode != "nominal":
                res.notes["mode_after"] = p.mode_text
            _check_applied_bound(b, res, m["wall"])
        else:
            res.notes["reason"] = next((x for x in mode_texts if x.startswith("fallback")), "")
        t_clear = time.monotonic()
        b.residual_names, b.residual_values, b.residual_stamp = list(b.joints), list(b.ctx.const_residual), None
        b.recovery(res, t_clear, ramp=expect_fallback)
    return run


def _diag_int(p, name: str, key: str) -> int:
    for _, s in reversed(p.rec.diagnostics):
        if s.name == name:
            for kv in s.values:
                if kv.key == key:
                    return int(kv.value)
    return 0


def _check_applied_bound(b: Bench, res: Trial, since: float) -> None:
    eps = b.config.residual_gain * b.config.residual_limit
    for a in b.probe.rec.applied:
        if a.t >= since and (a.values.shape != eps.shape or np.any(np.abs(a.values) > eps + 1e-9)):
            res.fail(f"applied residual {a.values.tolist()} beyond g*eps {eps.tolist()}")
            return


def _shift(seconds: float):
    def f(stamp):
        from builtin_interfaces.msg import Time

        ns = stamp.sec * 1_000_000_000 + stamp.nanosec + int(seconds * 1e9)
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return f


def _alternate(n: int, x: float) -> list:
    return [x if k % 2 == 0 else -x for k in range(n)]


# The rogue residuals, as (names, values) from the robot's joints J and the valid residual da.
_CONTENT = [
    ("residual_nan", "residual with NaN (first joint)", lambda J, da: (J, [math.nan] + [0.5] * (len(J) - 1)), True),
    ("residual_inf", "residual with +Inf/-Inf", lambda J, da: (J, _alternate(len(J), math.inf)), True),
    ("residual_huge", "residual +/-1e300 (finite): accepted, clamped to +/-eps, no fallback",
     lambda J, da: (J, _alternate(len(J), 1e300)), False),
    ("residual_wrong_length", "n + 1 values for n names",
     lambda J, da: (J, [round(0.1 * (k + 1), 3) for k in range(len(J) + 1)]), True),
    ("residual_unknown_name", "an unknown joint name (not_a_joint) in place of the last",
     lambda J, da: (J[:-1] + [unknown_joint(J)], [0.1] * len(J)), True),
    ("residual_missing_name", "the last joint missing", lambda J, da: (J[:-1], [0.1] * (len(J) - 1)), True),
    ("residual_duplicate_name", "a duplicated joint name (the first in place of the last)",
     lambda J, da: (J[:-1] + J[:1], [0.1] * len(J)), True),
    ("residual_shuffled_names", "joint names in another order (matched by name): no fallback, no rejection",
     lambda J, da: (J[::-1], da[::-1]), False),
]
for _name, _doc, _content, _fb in _CONTENT:
    scenario(_name, "relay", f"rogue residual_action: {_doc}" + (": rejected, fallback in time, ramped recovery"
                                                                 if _fb else ""),
             quick=_name in ("residual_nan", "residual_shuffled_names", "residual_unknown_name"))(
        _relay_injection(_content, _fb))


def _valid(J, da):
    return J, da


scenario("residual_stamp_future", "relay", "residual stamped 10 s in the future: fallback, ramped recovery")(
    _relay_injection(_valid, True, stamp_fn=_shift(10.0)))
scenario("residual_stamp_replayed", "relay", "residual stamps 5 s old (replayed): fallback, ramped recovery")(
    _relay_injection(_valid, True, stamp_fn=_shift(-5.0)))


def _rogue_base(b: Bench, values, stamp):
    msg = b.probe.base_pub.msg_type(name=list(b.joints), effort=[float(x) for x in values])
    msg.header.stamp = stamp
    b.probe.base_pub.publish(msg)


def _last_base(b: Bench) -> np.ndarray:
    base = next(x for x in reversed(b.probe.rec.base) if set(b.joints) <= set(x.names))
    return base.values[[base.names.index(j) for j in b.joints]]


def _base_stamp_scenario(offset: float):
    def run(b: Bench, res: Trial) -> None:
        b.wait_nominal()
        value = _last_base(b)
        t_f = b.now()
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            b.tick()
            _rogue_base(b, value + 1.0, _shift(offset)(b.stamp()))
        b.fallback_latency(res, t_f, modes=("base_fault",), bound=b.period * 2)
        t_clear = time.monotonic()
        b.recovery(res, t_clear)
    return run


scenario("base_stamp_future", "relay", "rogue base_action stamped 10 s ahead: base_fault (stop: nothing sent for "
         "it), ramped recovery")(_base_stamp_scenario(10.0))
scenario("base_stamp_replayed", "relay", "base_action replayed with 5 s old stamps: base_fault, ramped recovery")(
    _base_stamp_scenario(-5.0))


@scenario("burst_residual", "relay", "1000 residual_action messages at once: safe, the mixer keeps up "
          "(commands follow base actions within 0.1 s right after)", quick=True)
def sc_burst_residual(b: Bench, res: Trial) -> None:
    _burst(b, res, "residual")


@scenario("burst_base", "relay", "1000 base_action messages at once: every resulting command safe, the mixer "
          "keeps up afterwards")
def sc_burst_base(b: Bench, res: Trial) -> None:
    _burst(b, res, "base")


def _burst(b: Bench, res: Trial, what: str) -> None:
    b.wait_nominal()
    value = _last_base(b)
    da = list(b.ctx.const_residual)
    t0 = time.monotonic()
    for i in range(1000):
        if what == "residual":
            b.probe.publish_residual(b.joints, [da[0] * (i % 3) / 2] + da[1:])
        else:
            _rogue_base(b, value + 0.01 * (i % 7), b.stamp())
    res.notes["burst_publish_s"] = round(time.monotonic() - t0, 3)
    t_end = time.monotonic()
    b.run_for(1.5)
    # Keeping up: from 0.5 s after the burst, every base action gets its command promptly.
    rec = b.probe.rec
    bases = [x.t for x in rec.base if x.t > t_end + 0.5]
    cmds = np.array([c.t for c in rec.commands if c.t > t_end + 0.5])
    lags = [float(cmds[np.searchsorted(cmds, t)] - t) if np.searchsorted(cmds, t) < len(cmds) else math.inf
            for t in bases[:-3]]
    res.notes["lag_after_burst_max_s"] = None if not lags else round(max(lags), 4)
    if not lags or max(lags) > 0.1 + WALL_SLACK:
        res.fail(f"the mixer fell behind after the burst: command lag {res.notes['lag_after_burst_max_s']} s")
    res.recovered = b.probe.mode == "nominal" or b.run_until(lambda: b.probe.mode == "nominal", 30.0)
    if not res.recovered:
        res.fail("not nominal after the burst")


@scenario("joint_states_lost", "relay", "joint_states stop (sensor loss): base stops, mixer base_fault within "
          "base_timeout + watchdog period, stop = no command, ERROR on /diagnostics; resumes: ramped recovery",
          quick=True)
def sc_sensor_loss(b: Bench, res: Trial) -> None:
    b.wait_nominal()
    m = b.mark()
    t_f = b.now()
    b.publish_states = False
    cfg = b.config
    b.fallback_latency(res, t_f, modes=("base_fault",),
                       bound=cfg.base_timeout + cfg.base_timeout / 2 + 2 * b.period)
    b.run_until(lambda: any(s.level == _ERROR and s.name == "residual_mixer: mode" for t, s in b.probe.rec.diagnostics
                            if t >= m["wall"]), 10.0, "an ERROR on /diagnostics")
    b.run_for(0.5)
    t_clear = time.monotonic()
    b.publish_states = True
    b.recovery(res, t_clear)
