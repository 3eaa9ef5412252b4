"""The ``loop`` family: the MuJoCo closed loop (lockstep on /clock) with the real nodes.

Residual policy killed, stalled, restarted; perception lost; out of the training envelope; base
controller died under each base_stale_behavior.
"""
from __future__ import annotations

import json

import signal
import time

from ...params_file import node_params
from .common import (_ERROR, Context, NotApplicable, Trial, _first_mode_after, _latency, _mode_at, _Timeout,
                     constant_residual, modes_since, ramp_check, scenario)


# ====================================================================== MuJoCo loop harness
def sink_sim_time_at(record, wall):
    from ..closed_loop import sink_sim_time_at as f
    return f(record, wall)


def sink_applied(record, joints):
    from ..closed_loop import sink_applied as f
    return f(record, joints)


def _loop_trial(ctx: Context, name: str, trial: int, script, mixer_overrides: dict | None = None) -> Trial:
    """Run ``script(loop, st, res)`` (a generator stepped on every spin) on a fresh closed loop."""
    from ..closed_loop import ClosedLoop, LoopSettings

    params_file = ctx.loop_params(**(mixer_overrides or {}))
    config = ctx.mixer_config(params_file)
    settings = LoopSettings(params_file=params_file, plant_file=ctx.plant_file, robot=ctx.robot_ref,
                            model_path=ctx.loop_model, settle=1.0, duration=60.0, control_rate_hz=ctx.loop_rate,
                            seed=trial, log_dir=ctx.logs(name, f"trial{trial}"), startup_timeout=90.0)
    res = Trial()
    with ClosedLoop(settings, ctx.joints, name=f"faults_{name}_{trial}",
                    progress=lambda m: None) as loop:
        gen = script(loop, config, res)

        class _Done(Exception):
            pass

        def on_tick(_t: float) -> None:
            try:
                next(gen)
            except StopIteration:
                raise _Done from None

        try:
            loop.run(on_tick)
            res.fail("the scenario did not finish within the simulated window")
        except _Done:
            pass
        except _Timeout as exc:
            res.fail(str(exc))
        rec = loop.probe.rec
        from ..closed_loop import check_sink_record, transition_steps
        steps: list = []
        # Settled: up to the window the record ends in once its base action is in (the sim still runs).
        restarts, kills = res.notes.pop("_restarts", ()), res.notes.pop("_kills", ())
        if kills or restarts:  # as declared to the check (sim time), to judge its examples by
            res.notes["declared_kills_restarts_s"] = [[round(t, 4) for t in kills], [round(t, 4) for t in restarts]]
        checks = check_sink_record(loop.run_data.sink_record(settled=True), ctx.joints, config,
                                   config.base_stale_behavior, restarts=restarts, steps=steps, kills=kills)
        res.notes["commands_before_base_discovered"] = checks["before_first_base"]
        res.notes["unbased"] = checks["unbased"]
        res.notes["steps_without_base"] = checks["steps_without_base"]
        res.notes["lagging_commands"] = checks["lagging_commands"]
        res.notes["base_lost_at_kill"] = checks["base_lost_at_kill"]
        res.notes["open_window_commands"] = checks["open_window_commands"]
        res.notes["transition_steps"] = transition_steps(steps, rec.mixer_modes, ctx.joints,
                                                         1.0 / settings.control_rate_hz, config)
        res.violations = int(checks["total"])
        res.commands = int(checks["commands"])
        if checks["total"]:
            res.notes["violation_breakdown"] = checks
        res.notes["sim_time_end_s"] = round(loop.probe.ros_now(), 3)
    return res


def _wait(pred, timeout: float, what: str):
    """Yield until pred() (wall timeout -> _Timeout): a generator."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise _Timeout(f"timed out after {timeout:.0f} s waiting for {what}")
        yield


def _sleep_sim(loop, seconds: float):
    end = loop.probe.ros_now() + seconds
    yield from _wait(lambda: loop.probe.ros_now() >= end, 60.0 + 20 * seconds, f"{seconds} s of sim time")


INJECT_ATTEMPTS = 4  # injections in one loop trial while the precondition fails


def _nominal(loop):
    return lambda: loop.probe.ros_now() >= loop.s.settle and loop.probe.mode == "nominal"


def _residual_fault_script(inject, clear, bound_extra: float = 0.0, label: str = "fault", gradual: bool = False):
    """Wait nominal, inject (at sim time t_f), see fallback in time, clear, see a ramped recovery."""
    def script(loop, config, res: Trial):
        p = loop.probe
        period = 1.0 / loop.s.control_rate_hz
        skipped: list = []
        for attempt in range(INJECT_ATTEMPTS):  # again (cleared first) while the precondition fails
            for _ in range(20):  # inject while nominal (a loaded machine may make it fall back meanwhile)
                yield from _wait(_nominal(loop), 90.0, "nominal before the fault")
                yield from _sleep_sim(loop, 0.3)
                p.drain()
                if p.mode == "nominal":
                    break
            t_f = loop.sim_time_now()
            wall_start = time.monotonic()
            t_f = inject(loop) or t_f
            # The fault is in effect from here: the sim's own record gives its sim time exactly (the
            # probe's estimate above can only be earlier when the loaded probe lags behind the sim).
            exact = sink_sim_time_at(loop.run_data.sink_record(), time.monotonic())
            res.notes["fault_sim_time"] = {"probe": round(t_f, 4), "sink": exact}
            t_f = max(t_f, exact) if exact is not None else t_f
            # A fault that takes a while to be in effect (a clean stop: the process publishes until
            # it exits) starts when it is requested: the precondition holds at that time.
            t_start = sink_sim_time_at(loop.run_data.sink_record(), wall_start) if gradual else None
            res.bound_s = config.residual_timeout + period + period + bound_extra
            res.notes["mode_at_fault"] = _mode_at(p.rec.mixer_modes, t_f)
            yield from _wait(lambda: _first_mode_after(p.rec.mixer_modes, t_f, ("fallback",)) is not None, 60.0,
                             f"fallback after the {label}")
            res.fallback_latency_s, note = _latency(p.rec.mixer_modes, t_f, ("fallback",))
            if note and t_start is not None and _mode_at(p.rec.mixer_modes, t_start) == "nominal":
                # Nominal when the stop was requested, fallen back while the process shut down.
                res.notes["latency_note"] = f"fell back between the {label} request and the process exit"
                hit = _first_mode_after(p.rec.mixer_modes, t_start, ("fallback",))
                res.notes["latency_from_request_s"] = None if hit is None else round(hit - t_start, 4)
                note = ""
            # The precondition, from the mixer's own reports: nominal when the fault was injected.
            elif not note and _mode_at(p.rec.mixer_modes, t_f) != "nominal":
                note = f"{_mode_at(p.rec.mixer_modes, t_f)} (not nominal) when the fault was injected"
            if not note:
                break
            skipped.append(note)
            res.fallback_latency_s = None
            clear(loop)
            yield from _sleep_sim(loop, 0.5)
        if skipped:
            res.notes["injections_not_measured"] = skipped
        if res.fallback_latency_s is None:
            res.notes["latency_note"] = skipped[-1]
            res.not_measured = skipped[-1]
            return
        if res.fallback_latency_s > res.bound_s + 1e-9:
            res.fail(f"fallback {res.fallback_latency_s:.3f} s after the {label} (bound {res.bound_s:.3f} s)")
        yield from _sleep_sim(loop, 0.5)
        p.drain()
        t_clear_wall = time.monotonic()
        t_clear_sim = loop.sim_time_now()
        clear(loop)
        yield from _ramped_recovery(loop, config, res, lambda: p.mode == "nominal" and time.monotonic() > t_clear_wall,
                                    "nominal after the fault cleared", t_clear_wall, t_clear_sim)
    return script


def _ramped_recovery(loop, config, res: Trial, nominal, what: str, since_wall: float, since_sim: float):
    """Until ``nominal()``; then the residual must have ramped back in (from the sink's record) since ``since_wall``.

    The mixer must have reported ``recovering`` since then: on its ``~/mode`` topic (which keeps only
    its latest message, so a probe slowed down by the machine's load can miss a short state) or in
    its transition reports on /diagnostics (a deep queue, stamped on the simulated clock: those from
    ``since_sim`` on count).
    """
    p = loop.probe
    try:
        yield from _wait(nominal, 90.0, what)
    except _Timeout as exc:
        res.recovered = False
        res.fail(str(exc))
        return
    yield from _sleep_sim(loop, 0.2)
    p.drain()
    modes = modes_since(p.rec.modes, p.rec.mixer_modes, since_wall, since_sim)
    ok, why, info = ramp_check(sink_applied(loop.run_data.sink_record(), loop.joints),
                               constant_residual(config.residual_limit),
                               config.residual_limit, since_wall, modes, config.residual_gain)
    res.recovered = ok
    res.notes["ramp"] = info
    if not ok:
        res.fail(why)


def _kill_policy(loop):
    loop.kill("residual_policy")


def _restart_policy(loop):
    loop.restart("residual_policy")


def _stop_policy(loop):
    loop._killed.add("residual_policy")  # expected to be down
    loop.run_data.mark("stopped:residual_policy")
    loop.graph["residual_policy"].stop()
    # A clean stop (SIGINT) keeps publishing until rclpy has shut down: the fault is in
    # effect once the process has exited, so the latency is measured from then.
    return loop.sim_time_now()


def _sig(node: str, sig: int):
    def f(loop):
        loop.graph[node].signal(sig)
    return f


def _perception(enabled: bool):
    def f(loop):
        ok, reason = loop.probe.set_remote_parameter("perception", "enabled", enabled)
        if not ok:
            raise RuntimeError(f"perception enabled={enabled} refused: {reason}")
        # The fault is in effect once the node has applied the parameter, i.e. when it
        # answered; the service call itself (client discovery included) can take a while.
        return loop.sim_time_now()
    return f


@scenario("policy_killed", "loop", "residual_policy killed (-9): fallback within residual_timeout + one period "
          "(sim clock), restarted: ramped recovery", quick=True)
def sc_policy_killed(ctx, trial):
    return _loop_trial(ctx, "policy_killed", trial, _residual_fault_script(_kill_policy, _restart_policy,
                                                                           label="kill"))


@scenario("policy_stalled", "loop", "residual_policy stalled (SIGSTOP): fallback in time; SIGCONT: the stale "
          "backlog is rejected by stamp, ramped recovery", quick=True)
def sc_policy_stalled(ctx, trial):
    return _loop_trial(ctx, "policy_stalled", trial, _residual_fault_script(
        _sig("residual_policy", signal.SIGSTOP), _sig("residual_policy", signal.SIGCONT), label="SIGSTOP"))


@scenario("policy_restarted", "loop", "residual_policy stopped cleanly (SIGINT) and started again: fallback in "
          "time, ramped recovery")
def sc_policy_restarted(ctx, trial):
    return _loop_trial(ctx, "policy_restarted", trial, _residual_fault_script(_stop_policy, _restart_policy,
                                                                              label="stop", gradual=True))


@scenario("perception_lost", "loop", "perception stops (perception enabled:=false): the policy publishes nothing "
          "after perception_timeout, the mixer falls back; resumes: ramped recovery", quick=True)
def sc_perception(ctx, trial):
    pol = node_params(ctx.params, "residual_policy")
    extra = float(pol["perception_timeout"]) + 1.0 / 30.0  # perception publishes at 30 Hz
    return _loop_trial(ctx, "perception_lost", trial, _residual_fault_script(
        _perception(False), _perception(True), bound_extra=extra, label="perception loss"))


# ---------------------------------------------------------------------- training envelope
def _envelope_loop_model(ctx: Context) -> str:
    """Write the loop's constant residual with the robot's model's observation_envelope in its metadata.

    Raises NotApplicable when the robot has no model (robot.yaml model:).
    """
    import onnx

    from ...core.envelope import METADATA_KEY
    from ...core.observation import LOWPASS_METADATA_KEY
    from ..synthetic_models import constant_model

    if not ctx.model:
        raise NotApplicable("the robot has no model (robot.yaml model:) to take the training envelope from")
    path = ctx.work / "const_loop_envelope.onnx"
    if not path.is_file():
        meta = {e.key: e.value for e in onnx.load(ctx.model).metadata_props}
        if METADATA_KEY not in meta:
            raise RuntimeError(f"{ctx.model}: expected metadata '{METADATA_KEY}', found none")
        # the model's own observation (its names, and its low-pass: what its envelope was taken on)
        names = json.loads(meta["observation_names"]) if "observation_names" in meta else ctx.obs
        extra = {k: meta[k] for k in (METADATA_KEY, LOWPASS_METADATA_KEY) if k in meta}
        constant_model(str(path), ctx.joints, names, ctx.limit, ctx.const_residual, control_rate_hz=ctx.loop_rate,
                       extra_metadata=extra)
    return str(path)


def _set_payload(mass_sim, mass_perceived):
    def f(loop):
        # The out-of-envelope fallback follows the set within debounce + a perception period, faster
        # than a service answer may come back on a loaded machine: discover the service first, and
        # take the fault time just before the request (the latency then includes the request's hop).
        current = loop.probe.get_remote_parameter("perception", "payload_mass")
        loop.probe.set_remote_parameter("perception", "payload_mass", float(current))  # a no-op set
        t = loop.sim_time_now()
        ok, reason = loop.probe.set_remote_parameter("perception", "payload_mass", float(mass_perceived))
        if not ok:
            raise RuntimeError(f"perception payload_mass={mass_perceived} refused: {reason}")
        ok, reason = loop.probe.set_remote_parameter("mujoco_sim", "payload_mass", float(mass_sim))
        if not ok:
            raise RuntimeError(f"mujoco_sim payload_mass={mass_sim} refused: {reason}")
        return t
    return f


@scenario("out_of_envelope", "loop", "a payload of 2 hi + 1 kg (training range [lo, hi], the robot's randomization; "
          "4 kg on the built-in arm) is picked up and perceived: residual_policy reports out_of_envelope "
          "(perception/payload_mass) and stops, fallback within debounce + residual_timeout; payload dropped: "
          "ramped recovery, 0 violations (not applicable to a robot without a model)")
def sc_out_of_envelope(ctx, trial):
    import copy

    from ...sim.plant import PlantParams

    pol = node_params(ctx.params, "residual_policy")
    debounce = float(pol["envelope_debounce"])
    real = PlantParams.from_yaml(ctx.plant_file).payload_mass
    inner = _residual_fault_script(_set_payload(ctx.envelope_payload, ctx.envelope_payload),
                                   _set_payload(real, real),
                                   bound_extra=debounce + 1.0 / 30.0,  # perception publishes at 30 Hz
                                   label="out-of-envelope payload")

    def script(loop, config, res: Trial):
        yield from inner(loop, config, res)
        yield from _sleep_sim(loop, 0.3)  # one more diagnostics period
        loop.probe.drain()
        reports, trips = [], 0
        for _, st in loop.probe.rec.diagnostics:
            if st.name != "residual_policy":
                continue
            values = {kv.key: kv.value for kv in st.values}
            trips = max(trips, int(values.get("envelope_trips", 0)))
            for text in (st.message, values.get("last_out_of_envelope", "")):
                if "out_of_envelope" in text and text not in reports:
                    reports.append(text)
        res.notes["envelope_fallbacks"] = trips
        res.notes["out_of_envelope"] = reports[:3]
        if not res.not_measured and not any("perception/payload_mass" in r for r in reports):
            res.fail("expected residual_policy to report out_of_envelope on perception/payload_mass, found "
                     f"{reports[:2] or 'no out_of_envelope report'}")

    envelope_ctx = copy.copy(ctx)  # the same files; the loop model with an envelope, policy diagnostics at 10 Hz
    envelope_ctx.loop_model = _envelope_loop_model(ctx)
    envelope_ctx.loop_params = lambda **mixer: ctx._write(
        "loop_envelope.yaml", {"residual_mixer": mixer, "residual_policy": {"diagnostics_period": 0.1}})
    return _loop_trial(envelope_ctx, "out_of_envelope", trial, script)


def _base_death_script(behaviour: str):
    def script(loop, config, res: Trial):
        p = loop.probe
        period = 1.0 / loop.s.control_rate_hz
        yield from _wait(_nominal(loop), 90.0, "nominal before the fault")
        yield from _sleep_sim(loop, 0.3)
        p.drain()
        t_f = loop.sim_time_now()
        loop.kill("base_controller")
        wall_f = time.monotonic()
        exact = sink_sim_time_at(loop.run_data.sink_record(), wall_f)
        t_f = max(t_f, exact) if exact is not None else t_f
        res.notes["_kills"] = [t_f]
        # Watchdog: base_timeout, checked every base_timeout / 2; + a period of quantisation.
        res.bound_s = config.base_timeout + max(config.base_timeout / 2, 0.002) + 2 * period
        yield from _wait(lambda: _first_mode_after(p.rec.mixer_modes, t_f, ("base_fault",)) is not None, 60.0,
                         "base_fault after the base controller died")
        from_kill, note = _latency(p.rec.mixer_modes, t_f, ("base_fault",))
        if note:
            res.notes["latency_note"] = note
            res.not_measured = note
            return
        # The watchdog's deadline runs from the last base action the mixer received, known exactly
        # from its applied residual (stamped with that base action's stamp): judge from there. The
        # probe's estimate of the kill time (from its own, possibly lagging, joint_states) is kept too.
        hit = _first_mode_after(p.rec.mixer_modes, t_f, ("base_fault",))
        # The last base action the dead controller published, as the sim received it (its record
        # holds every one): the mixer's watchdog cannot have seen a later one.
        last = max((ns * 1e-9 for ns in loop.run_data.sink_record().bases if ns * 1e-9 <= hit
                    and abs(hit - ns * 1e-9) < 5.0), default=None)
        res.notes["latency_from_kill_s"] = from_kill
        res.fallback_latency_s = from_kill if last is None or note else min(from_kill, hit - last)
        res.notes["latency_from_last_base_s"] = None if last is None else hit - last
        if res.fallback_latency_s > res.bound_s + 1e-9:
            res.fail(f"base_fault {res.fallback_latency_s:.3f} s after the death (bound {res.bound_s:.3f} s)")
        # Lockstep waits lockstep_wait (0.5 wall s) for a command before stepping, so the watchdog
        # above was judged with the simulation waiting for the mixer. Without commands (stop) that
        # is slow: step every 0.02 wall s from now on.
        ok, why = p.set_remote_parameter("mujoco_sim", "lockstep_wait", 0.02)
        if not ok:
            raise RuntimeError(f"lockstep_wait refused: {why}")
        yield from _wait(lambda: any(s.level == _ERROR and s.name == "residual_mixer: mode"
                                     for t, s in p.rec.diagnostics if t >= wall_f), 30.0,
                         "an ERROR on /diagnostics from the mixer")
        yield from _sleep_sim(loop, 0.5)
        p.drain()
        # Counted from the sink's exact record on the simulated clock: the commands the sim received
        # for states later than 0.2 s after the mixer's base_fault (a lagging probe on a loaded
        # machine still delivers commands published before it, which are not "while dead").
        rec = loop.run_data.sink_record()
        during = [c for w in rec.windows if w.t_ns * 1e-9 > hit + 0.2 for c in w.commands]
        res.notes["commands_while_base_dead"] = len(during)
        if behaviour == "stop" and during:
            res.fail(f"stop: {len(during)} commands published while the base was dead")
        if behaviour in ("zero", "hold", "damp") and not during:
            res.fail(f"{behaviour}: no command published while the base was dead")
        # Lockstep again (wait for each command) before the base controller is back.
        ok, why = p.set_remote_parameter("mujoco_sim", "lockstep_wait", 0.5)
        if not ok:
            raise RuntimeError(f"lockstep_wait refused: {why}")
        t_back = time.monotonic()
        res.notes["_restarts"] = [loop.sim_time_now()]
        loop.restart("base_controller")
        yield from _ramped_recovery(loop, config, res,
                                    lambda: p.mode == "nominal" and any(c.t > t_back for c in p.rec.commands),
                                    "nominal after the base controller restarted", t_back, res.notes["_restarts"][0])
    return script


@scenario("base_died_stop", "loop", "base_controller killed, base_stale_behavior stop: base_fault within "
          "base_timeout + watchdog period, ERROR on /diagnostics, no command at all; restarted: recovery",
          quick=True)
def sc_base_stop(ctx, trial):
    return _loop_trial(ctx, "base_died_stop", trial, _base_death_script("stop"), {"base_stale_behavior": "stop"})


@scenario("base_died_damp", "loop", "as base_died_stop with base_stale_behavior damp (the default): commands go "
          "on, blended from the last command to -damp_kd qd + gravity(q); restarted: a bumpless resume and "
          "recovery", quick=True)
def sc_base_damp(ctx, trial):
    return _loop_trial(ctx, "base_died_damp", trial, _base_death_script("damp"), {"base_stale_behavior": "damp"})


@scenario("base_died_zero", "loop", "as base_died_stop with base_stale_behavior zero: only clip(0) commands")
def sc_base_zero(ctx, trial):
    return _loop_trial(ctx, "base_died_zero", trial, _base_death_script("zero"), {"base_stale_behavior": "zero"})


@scenario("base_died_hold", "loop", "as base_died_stop with base_stale_behavior hold: the last command repeated")
def sc_base_hold(ctx, trial):
    return _loop_trial(ctx, "base_died_hold", trial, _base_death_script("hold"), {"base_stale_behavior": "hold"})
