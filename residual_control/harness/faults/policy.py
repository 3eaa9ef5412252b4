"""The ``policy`` family: the relay graph plus residual_policy.

Bad models refused at start and as live updates, a valid live model update, invalid live parameters
on every node.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .common import Trial, _Timeout, scenario, second_residual, unknown_joint
from .probe_driven import Bench
from .spawn import BAD_MODELS, _start_refusal_result


def _model_refusal(name: str):
    key, sha, _ = BAD_MODELS[name]

    def run(b: Bench, res: Trial) -> None:
        ok, line = _start_refusal_result(b.pending, name)
        res.notes["start"] = line[:300]
        if not ok:
            res.fail(f"start: {line}")
        b.wait_nominal()
        p = b.probe
        old_path = b.get_param("residual_policy", "model_path")
        published0 = len(p.rec.residual)
        t0 = time.monotonic()
        if sha:
            ok, why = b.set_param("residual_policy", "model_sha256", sha)
        else:
            ok, why = b.set_param("residual_policy", "model_path", b.ctx.relay_models[key])
        res.notes["set_result"] = [ok, why]
        # Accepted for loading (a worker thread validates it), then refused and set back.
        def refusal() -> str:
            for t, s in p.rec.diagnostics:
                if t >= t0 and s.name == "residual_policy":
                    for text in [s.message] + [kv.value for kv in s.values if kv.key == "last_model_update"]:
                        if "model update refused" in text:
                            return text
            return ""

        refused = b.run_until(lambda: bool(refusal()), 30.0)
        if not ok and why:
            refused = True  # refused synchronously
        if not refused:
            res.fail("the live update was not refused (no 'model update refused' on /diagnostics)")
        msg = refusal() or why
        res.notes["live"] = msg[:300]
        if "expected" not in msg or "found" not in msg:
            res.fail(f"live refusal does not name expected/found: {msg!r}")
        b.run_until(lambda: b.get_param("residual_policy", "model_path") == old_path
                    and b.get_param("residual_policy", "model_sha256") == "", 20.0)
        now_path = b.get_param("residual_policy", "model_path")
        now_sha = b.get_param("residual_policy", "model_sha256")
        if now_path != old_path or now_sha != "":
            res.fail(f"parameters not set back: model_path {now_path!r} (was {old_path!r}), "
                     f"model_sha256 {now_sha!r} (was '')")
        b.run_for(0.5)
        if len(p.rec.residual) <= published0:
            res.fail("the old model stopped publishing")
        fallbacks = [x for t, _, x in p.rec.modes if t >= t0 and not x.startswith("nominal")]
        res.notes["modes_during"] = fallbacks[:3]
        res.recovered = b.run_until(lambda: p.mode == "nominal", 30.0)
        if fallbacks:
            res.notes["note"] = "non-nominal mode during the attempt (timing on a loaded machine?)"
        vals = [r.values for r in p.rec.residual[published0:]]
        if vals and not np.allclose(vals[-1], b.ctx.const_residual):
            res.fail(f"the residual changed: {vals[-1].tolist()}")
    return run


for _n, (_k, _s, _d) in BAD_MODELS.items():
    scenario(_n, "policy", f"{_d}: refused at start (exit 2, names expected/found) and as a live "
             "model_path/model_sha256 update while the old model keeps running",
             quick=_n in ("model_corrupt", "model_sha256_mismatch"))(_model_refusal(_n))


@scenario("model_update_valid", "policy", "a valid live model update (ros2 param set model_path): switches "
          "without a fallback or a violation, and back", quick=True)
def sc_model_valid(b: Bench, res: Trial) -> None:
    b.wait_nominal()
    m = b.mark()
    p = b.probe
    for path, value in ((b.ctx.relay_models["good2"], second_residual(b.ctx.limit)),
                        (b.ctx.relay_models["good"], b.ctx.const_residual)):
        t0 = time.monotonic()
        ok, why = b.set_param("residual_policy", "model_path", path)
        if not ok:
            res.fail(f"valid update refused: {why}")
            break
        if not b.run_until(lambda: any(r.t >= t0 and np.allclose(r.values, value) for r in p.rec.residual), 30.0):
            res.fail(f"the residual never switched to {value}")
        b.run_for(0.3)
    bad = [x for t, _, x in p.rec.modes if t >= m["wall"] and not x.startswith("nominal")]
    res.notes["non_nominal_modes"] = bad[:3]
    if any(x.startswith("fallback: residual:") for x in bad):
        res.fail(f"the swap caused a rejection: {bad[:2]}")
    res.recovered = b.run_until(lambda: p.mode == "nominal", 30.0)


INVALID_NODES = ("residual_mixer", "base_controller", "residual_policy")


def invalid_parameters(joints, params) -> dict:
    """Every kind of invalid live parameter per node, sized for the robot's ``joints`` (its loaded ``params``).

    Lists one value per joint where the parameter is per joint: a bad first value, a wrong length
    (n - 1 values, 2 for a one-joint robot), a value beyond the read-only ceiling; read-only parameters
    (joints, ceilings, the model's payload) changed at all.
    """
    from ...params_file import node_params

    n = len(joints)
    mixer = node_params(params, "residual_mixer")
    rest = lambda x: [x] * (n - 1)  # noqa: E731
    short = [1.0] * (n - 1) if n > 1 else [1.0, 1.0]
    beyond_limit = max(100.0, 2.0 * max(float(x) for x in mixer["residual_limit_max"]))
    beyond_command = max(100.0, 2.0 * max(float(x) for x in mixer["command_max"]))
    other_joints = [unknown_joint(joints, f"not_a_joint_{k}") for k in range(n)]
    return {
        "residual_mixer": [
            ("residual_limit", [-1.0] + rest(0.5)), ("residual_limit", [math.nan] + rest(0.5)),
            ("residual_limit", short), ("residual_limit", [beyond_limit] + rest(0.5)), ("residual_limit", "big"),
            ("residual_gain", 1.5), ("residual_gain", -0.1), ("residual_gain", math.nan), ("residual_timeout", 0.0),
            ("residual_timeout", math.inf), ("command_min", [beyond_command] * n), ("command_max", short),
            ("residual_limit_max", [beyond_limit] * n), ("base_stale_behavior", "explode"),
            ("joints", other_joints), ("diagnostics_period", 1.0), ("recovery_ramp_time", -1.0),
        ],
        "base_controller": [
            ("kp", [-1.0] + rest(1.0)), ("kp", short), ("kd", [math.nan] + rest(1.0)), ("kp", "x"),
            ("controller_type", "pid"), ("command_min", [beyond_command] * n), ("derivative_filter_hz", 0.0),
            ("model.payload_mass", 3.0), ("joints", other_joints),
        ],
        "residual_policy": [
            ("perception_timeout", 0.0), ("perception_timeout", math.nan), ("joint_state_timeout", -1.0),
            ("control_rate_hz", 1000.0), ("residual_limit", [1.0] * n), ("joints", other_joints),
            ("perception_features", ["x"]), ("model_path", 5), ("model_sha256", 1.5),
        ],
    }


def _invalid_params(node: str):
    def run(b: Bench, res: Trial) -> None:
        b.wait_nominal()
        invalid = invalid_parameters(b.joints, b.ctx.params)[node]
        names = sorted({n for n, _ in invalid})
        before = {n: b.get_param(node, n) for n in names}
        accepted, reasons = [], {}
        for name, value in invalid:
            try:
                ok, why = b.set_param(node, name, value)
            except _Timeout as exc:
                res.fail(f"{name}={value!r}: {exc}")
                continue
            if ok:
                accepted.append(f"{name}={value!r}")
            elif not why:
                res.fail(f"{name}={value!r}: rejected without a reason")
            reasons[f"{name}={value!r}"] = why[:160]
        res.notes["reasons"] = reasons
        if accepted:
            res.fail(f"accepted invalid values: {accepted}")
        after = {n: b.get_param(node, n) for n in names}
        changed = [n for n in names if not _same(before[n], after[n])]
        if changed:
            res.fail(f"parameters changed: {[(n, before[n], after[n]) for n in changed]}")
        b.check_alive()
        res.recovered = b.run_until(lambda: b.probe.mode == "nominal", 30.0)
    return run


def _same(a, b) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


for _node in INVALID_NODES:
    scenario(f"invalid_params_{_node}", "policy", f"every kind of invalid live parameter on {_node}: rejected "
             "with a reason, nothing changes, no violation", quick=_node == "residual_mixer")(_invalid_params(_node))
