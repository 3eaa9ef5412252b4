"""The demo's path, shorter: MuJoCo plant + the full node graph as processes, on simulated time.

Runs the shipped model on the shifted ("real") plant. Checks that the
residual beats the base, that no command the actuator side receives breaks
the safety invariants, and that the kill of residual_policy makes the mixer
fall back within residual_timeout + one control period *of simulated time*,
also when the simulation runs at half real time (timeouts are judged on the
node clock, /clock from mujoco_sim, against message stamps).
"""
from __future__ import annotations

import argparse

import pytest

from residual_control.paths import default_model, default_params_file, share_path
from residual_control.harness.closed_loop import load_params, mixer_config, node_params
from residual_control.harness.demo import run_trial

pytestmark = pytest.mark.graph

PERIOD = 0.01
# The kill time is bounded from below by the newest joint state or residual the
# probe saw, so the measured latency can only exceed the mixer's: one period of
# clock quantisation, one for a residual received a step after its stamp, and
# one for a residual in flight (delivered to the probe, lost to the mixer) at
# the kill. On a quiet machine the demo measures 0.05-0.06 s.
MEASUREMENT_PERIODS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    params_file = str(default_params_file())
    params = load_params(params_file)
    joints = list(node_params(params, "residual_mixer")["joints"])
    config = mixer_config(params)
    args = argparse.Namespace(log_dir=str(tmp_path_factory.mktemp("loop_logs")))
    settings = dict(params_file=params_file, plant_file=str(share_path("config", "plants", "real.yaml")),
                    model_path=str(default_model()), settle=5.0, duration=5.0, control_rate_hz=100.0)
    return args, settings, joints, config


def test_residual_beats_base_on_the_shifted_plant_with_zero_violations(setup):
    args, settings, joints, config = setup
    # Control quality, not the machine's speed: the simulated clock runs at half real time, so a
    # loaded 2-core machine (CI, a CPU hog) does not starve the policy past residual_timeout and
    # turn the trial into fallbacks. The demo measures the same at real time (README).
    settings = dict(settings, real_time_factor=0.5)
    base, _ = run_trial("base", args, settings, joints, config)
    residual, _ = run_trial("residual", args, settings, joints, config)
    assert base["violations"] == 0, base["violation_breakdown"]
    assert residual["violations"] == 0, residual["violation_breakdown"]
    assert base["max_abs_residual"] == 0.0  # residual_gain 0: the base alone
    assert residual["max_abs_residual"] <= max(config.residual_limit) + 1e-9
    # The demo's acceptance is 0.5x over 10 s; a shorter window on a loaded CI
    # machine keeps a margin.
    assert residual["rmse"] <= 0.7 * base["rmse"], (residual["rmse"], base["rmse"])
    # The roughness of the commands the sim received in the window: one per period, every joint measured.
    for r in (base, residual):
        assert all(x is not None and x > 0 for x in r["roughness"]["rms_step"]), r["roughness"]
        assert all(x is not None and 0 <= x <= 1 for x in r["roughness"]["hf_share"]), r["roughness"]


@pytest.mark.parametrize("real_time_factor", [1.0, 0.5])
def test_kill_falls_back_within_timeout_on_the_sim_clock(setup, real_time_factor):
    args, settings, joints, config = setup
    s = dict(settings, real_time_factor=real_time_factor)
    fault, _ = run_trial("residual_fault", args, s, joints, config)
    assert fault["violations"] == 0, fault["violation_breakdown"]
    latency = fault["fallback_latency_s"]
    assert latency is not None, "no fallback seen after the kill"
    assert 0.0 <= latency <= config.residual_timeout + MEASUREMENT_PERIODS * PERIOD + 1e-6, latency


# ---------------------------------------------------------------------- the sink record and its check
# (no processes: a record written by SinkRecorder as mujoco_sim writes it, then checked)
import types  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from residual_control.sim.sink_record import SinkRecorder, read_record  # noqa: E402
from residual_control.harness.closed_loop import check_sink_record, transition_steps  # noqa: E402

JOINTS = ("shoulder", "elbow")
CFG = types.SimpleNamespace(joints=JOINTS, command_min=np.array([-50.0, -30.0]), command_max=np.array([50.0, 30.0]),
                            residual_gain=1.0, residual_limit=np.array([4.0, 2.0]), fallback_ramp_time=0.2)


def _stamp(ns: int):
    return types.SimpleNamespace(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _base_msg(ns: int, values, names=("elbow", "shoulder")):
    # Names in another order than the mixer's joints: the check matches by name.
    v = dict(zip(JOINTS, values))
    return types.SimpleNamespace(header=types.SimpleNamespace(stamp=_stamp(ns)), name=list(names),
                                 effort=[v[n] for n in names])


def _write(path, windows):
    """windows: [(base or None, [commands], base_before_command: bool, new_command: bool)] at 100 Hz."""
    rec = SinkRecorder(str(path))
    for k, (base, commands, base_first, new) in enumerate(windows):
        ns = 10_000_000 * (k + 1)
        rec.state(_stamp(ns))
        if base is not None and base_first:
            rec.base(_base_msg(ns, base))
        for c in commands:
            rec.command(c)
        if base is not None and not base_first:
            rec.base(_base_msg(ns, base))
        rec.step(ns, new)
    rec.close()
    return read_record(path)


def test_sink_record_round_trip_and_clean_loop_has_no_violation(tmp_path):
    windows = [([10.0, -5.0], [[12.0, -6.0]], k % 2 == 0, True) for k in range(20)]
    record = _write(tmp_path / "r.txt", windows)
    assert len(record.windows) == 20 and len(record.bases) == 20
    steps: list = []
    c = check_sink_record(record, JOINTS, CFG, "stop", steps=steps)
    assert c["total"] == 0 and c["commands"] == 20 and c["unbased"] == 0, c
    assert np.allclose(steps[5][2], [2.0, -1.0])  # command - base, by joint name


def test_a_clipped_joint_has_no_measured_applied_residual(tmp_path):
    # The shoulder's base action beyond its limit (50): the command is clipped, and command - base
    # (-10) is the clip, not a residual; the elbow's applied residual is measured as usual.
    windows = [([60.0, -5.0], [[50.0, -6.0]], True, True), ([10.0, -5.0], [[12.0, -6.0]], True, True)]
    steps: list = []
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop", steps=steps)
    assert c["total"] == 0, c
    assert np.isnan(steps[0][2][0]) and steps[0][2][1] == -1.0
    assert steps[1][2].tolist() == [2.0, -1.0]
    # No step is counted from the clip into a transition's window.
    out = transition_steps(steps, [(0.0, "nominal"), (0.015, "fallback")], JOINTS, 0.01, CFG)
    assert out["fallback"]["applied_residual"]["shoulder"] == 0.0
    assert out["fallback"]["applied_residual"]["elbow"] == 0.0


def test_a_command_beyond_g_eps_of_its_own_base_is_a_violation_even_if_the_previous_base_fits(tmp_path):
    # Window 3's command fits window 2's base action but not its own: no lockstep timeout came
    # before, so its base is exactly the one stamped with window 3's state.
    windows = [([0.0, 0.0], [[0.0, 0.0]], True, True), ([0.0, 0.0], [[1.0, 0.0]], True, True),
               ([20.0, 0.0], [[1.0, 0.0]], True, True)]
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop")
    assert c["residual_bound"] == 1 and c["total"] == 1, c


def test_after_a_lockstep_timeout_the_late_command_is_paired_with_the_previous_base(tmp_path):
    windows = [([0.0, 0.0], [[0.0, 0.0]], True, True),
               ([5.0, 0.0], [], True, False),  # stepped at lockstep_wait without a command
               ([20.0, 0.0], [[5.5, 0.0], [20.5, 0.0]], True, True),  # the late one, then its own
               ([30.0, 0.0], [[30.0, 0.0]], True, True)]
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop")
    assert c["total"] == 0 and c["lagging_commands"] == 1, c


def test_one_window_behind_each_command_is_paired_with_the_base_it_came_from(tmp_path):
    # Both base actions are within g*eps of every command here: the pairing follows the order
    # (one window behind, the first command is the late one), not the nearest value.
    windows = [([0.0, 0.0], [[0.5, 0.0]], True, True),
               ([1.0, 0.0], [], True, False),
               ([2.0, 0.0], [[1.5, 0.0]], True, True),  # still one behind: from base 1.0
               ([3.0, 0.0], [[2.5, 0.0], [3.5, 0.0]], True, True),  # caught up
               ([4.0, 0.0], [[4.5, 0.0]], True, True)]
    steps: list = []
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop", steps=steps)
    assert c["total"] == 0 and c["lagging_commands"] == 2, c
    assert [None if r is None else r[0] for _, _, r in steps] == [0.5, None, 0.5, 0.5, 0.5]


def test_windows_without_a_command_at_start_up_are_missing_commands_not_late_ones(tmp_path):
    windows = [([0.0, 0.0], [], True, False), ([1.0, 0.0], [], True, False),  # mixer not discovered yet
               ([2.0, 0.0], [[1.5, 0.0]], True, True), ([3.0, 0.0], [[2.5, 0.0]], True, True)]
    steps: list = []
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop", steps=steps)
    assert c["total"] == 0 and c["lagging_commands"] == 0, c
    assert [None if r is None else r[0] for _, _, r in steps] == [None, None, -0.5, -0.5]


def test_after_the_mixer_stopped_answering_no_command_is_taken_as_late(tmp_path):
    # Windows 1-2 without a command (the mixer stopped), then it answers again in time.
    windows = [([0.0, 0.0], [[0.5, 0.0]], True, True), ([1.0, 0.0], [], True, False),
               ([2.0, 0.0], [], True, False), ([3.0, 0.0], [[2.5, 0.0]], True, True),
               ([4.0, 0.0], [[3.5, 0.0]], True, True)]
    steps: list = []
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop", steps=steps)
    assert c["total"] == 0 and c["lagging_commands"] == 0, c
    assert [None if r is None else r[0] for _, _, r in steps] == [0.5, None, None, -0.5, -0.5]


def test_the_mixers_applied_residual_names_the_base_when_the_order_cannot(tmp_path):
    windows = [([0.0, 0.0], [[0.5, 0.0]], True, True), ([1.0, 0.0], [], True, False),
               ([2.0, 0.0], [[2.5, 0.0]], True, True)]
    _write(tmp_path / "r.txt", windows)
    steps: list = []
    lagged = check_sink_record(read_record(tmp_path / "r.txt"), JOINTS, CFG, "stop", steps=steps)
    assert lagged["lagging_commands"] == 1 and np.isclose(steps[2][2][0], 1.5)  # by order: the late one
    # The mixer reports the applied residual 0.5 for the state stamped 0.03 s: clip(2.0 + 0.5) is the
    # command, so it came from that state's base action (checked against the base controller's).
    with open(tmp_path / "r.txt", "a") as f:
        f.write("A 30000000 shoulder,elbow 0.5,0.0\n")
    steps = []
    named = check_sink_record(read_record(tmp_path / "r.txt"), JOINTS, CFG, "stop", steps=steps)
    assert named["identified_commands"] == 1 and named["lagging_commands"] == 0 and named["total"] == 0
    assert np.isclose(steps[2][2][0], 0.5)
    # A claim that does not reproduce the command names nothing.
    with open(tmp_path / "r.txt", "a") as f:
        f.write("A 20000000 shoulder,elbow 9.0,0.0\n")
    assert check_sink_record(read_record(tmp_path / "r.txt"), JOINTS, CFG, "stop")["identified_commands"] == 1


def test_a_command_without_its_base_action_is_a_violation_not_an_excuse(tmp_path):
    # (The first command is no stale output (zero: clip(0), hold: the previous): the mixer had a base.)
    windows = [([2.0, 0.0], [[2.0, 0.0]], True, True), (None, [[1.0, 1.0]], True, True),
               ([0.0, 0.0], [[0.0, 0.0]], True, True)]
    for behaviour in ("stop", "zero", "hold"):
        c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, behaviour)
        assert c["unbased"] == 1 and c["total"] == 1, (behaviour, c)
    # The documented stale behaviour is no violation: zero torque...
    zero = [([0.0, 0.0], [[3.0, 0.0]], True, True), (None, [[0.0, 0.0]], True, True)]
    assert check_sink_record(_write(tmp_path / "z.txt", zero), JOINTS, CFG, "zero")["total"] == 0
    # ...or the last command held.
    hold = [([0.0, 0.0], [[3.0, 0.0]], True, True), (None, [[3.0, 0.0]], True, True)]
    assert check_sink_record(_write(tmp_path / "h.txt", hold), JOINTS, CFG, "hold")["total"] == 0
    assert check_sink_record(_write(tmp_path / "h.txt", hold), JOINTS, CFG, "zero")["unbased"] == 1


def test_the_resume_from_a_stale_period_is_held_to_the_blend_and_ends_with_the_ramp(tmp_path):
    # 100 Hz windows, fallback_ramp_time 0.2 s: zero torque while the base is gone, then the
    # mixer blends from clip(0) to base + residual over 0.2 s (plus two periods of slack).
    base = [20.0, -10.0]
    stale = [([0.0, 0.0], [[1.0, 0.0]], True, True)] + [(None, [[0.0, 0.0]], True, True)] * 3
    blend = [(base, [[20.0 * k / 20, -10.0 * k / 20]], True, True) for k in range(1, 21)]
    after = [(base, [[21.0, -10.0]], True, True)] * 3
    c = check_sink_record(_write(tmp_path / "r.txt", stale + blend + after), JOINTS, CFG, "zero")
    assert c["total"] == 0 and c["stale_behavior_commands"] == 3, c
    assert c["resume_commands"] > 10, c  # the blend commands beyond g * eps of their base
    # A resume command beyond both the stale command and the base band is a violation...
    bad = blend.copy()
    bad[2] = (base, [[-10.0, 0.0]], True, True)
    c = check_sink_record(_write(tmp_path / "b.txt", stale + bad + after), JOINTS, CFG, "zero")
    assert c["resume_bound"] == 1 and c["total"] == 1, c
    # ...and so is a command still away from its base after the ramp.
    slow = [(base, [[10.0, -5.0]], True, True)] * 40
    c = check_sink_record(_write(tmp_path / "s.txt", stale + slow), JOINTS, CFG, "zero")
    assert c["residual_bound"] == 40 - 23, c  # windows 0.2 s + 2 periods after the resume started
    # With stop there is no stale command to resume from: the mix at once.
    c = check_sink_record(_write(tmp_path / "t.txt", stale[:1] + [(None, [], True, False)] * 3 + blend), JOINTS,
                          CFG, "stop")
    assert c["residual_bound"] == 15, c  # k = 1..15 of 20 lie beyond g * eps of the base


def test_commands_before_the_base_controller_is_discovered_are_only_held_to_the_limits(tmp_path):
    windows = [(None, [[9.0, 9.0]], True, True), ([0.0, 0.0], [[0.0, 0.0]], True, True),
               (None, [], True, False), (None, [[7.0, 7.0]], True, True),  # restarted at window 3
               ([0.0, 0.0], [[1.0, 1.0]], True, True), (None, [[99.0, 0.0]], True, True)]
    record = _write(tmp_path / "r.txt", windows)
    c = check_sink_record(record, JOINTS, CFG, "stop", restarts=[0.035])
    assert c["before_first_base"] == 2, c
    assert c["out_of_limits"] == 1 and c["total"] == 1, c  # 99 > 50 even without a base
    assert check_sink_record(record, JOINTS, CFG, "stop")["unbased"] == 1  # no restart declared


def test_non_finite_and_wrong_length_commands_are_violations(tmp_path):
    windows = [([0.0, 0.0], [[float("nan"), 0.0]], True, True), ([0.0, 0.0], [[0.0]], True, True)]
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop")
    assert c["non_finite"] == 2, c


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-40, 40), st.floats(-25, 25), st.floats(-1, 1), st.floats(-1, 1)),
                min_size=2, max_size=30), st.data())
def test_exactly_the_commands_beyond_g_eps_are_counted(tmp_path_factory, rows, data):
    bound = CFG.residual_gain * CFG.residual_limit
    bad = data.draw(st.sets(st.integers(0, len(rows) - 1)))
    windows = []
    for k, (b0, b1, r0, r1) in enumerate(rows):
        base = np.array([b0, b1])
        r = np.array([r0, r1]) * bound
        if k in bad:
            r = r + np.sign(r + 1e-9) * (bound + 0.5)  # just outside on both joints
        cmd = np.clip(base + r, CFG.command_min, CFG.command_max)
        windows.append((base.tolist(), [cmd.tolist()], bool(k % 2), True))
    kinds: list = []
    c = check_sink_record(_write(tmp_path_factory.mktemp("h") / "r.txt", windows), JOINTS, CFG, "stop",
                          kinds=kinds)
    # A clipped command can land back within g*eps of its base: only those that did not are violations.
    expected = {k for k in bad
                if np.any(np.abs(np.clip(np.array(rows[k][:2]) + (np.array(rows[k][2:]) * bound + np.sign(
                    np.array(rows[k][2:]) * bound + 1e-9) * (bound + 0.5)), CFG.command_min, CFG.command_max)
                    - np.array(rows[k][:2])) > bound + 1e-6)}
    assert {k for k, kind in enumerate(kinds) if kind} == expected
    assert c["total"] == len(expected) and c["unbased"] == 0


def test_transition_steps_measure_the_decay_after_a_fallback():
    period = 0.01
    # Applied residual 4 N m until the fallback at t = 0.10, then a linear decay over 0.2 s.
    steps = []
    for k in range(40):
        t = round(k * period, 6)
        r = 4.0 if t < 0.10 else max(0.0, 4.0 * (1 - (t - 0.09) / 0.2))
        base = np.array([1.0 - 0.5 * k, 0.0])  # the base moves too: only the residual is bounded
        steps.append((t, base + [r, 0.0], np.array([r, 0.0])))
    modes = [(0.0, "nominal"), (0.10, "fallback")]
    out = transition_steps(steps, modes, JOINTS, period, CFG)
    f = out["fallback"]
    assert f["transitions"] == 1
    assert np.isclose(f["applied_residual"]["shoulder"], 4.0 * period / 0.2)
    assert f["applied_residual"]["shoulder"] <= f["bound"]["shoulder"] + 1e-9
    assert np.isclose(f["command"]["shoulder"], 0.5 + 4.0 * period / 0.2)
    # The same without a ramp: one step of the whole residual.
    jump = [(t, c, np.array([4.0 if t < 0.10 else 0.0, 0.0])) for t, c, _ in steps]
    assert np.isclose(transition_steps(jump, modes, JOINTS, period, CFG)["fallback"]["applied_residual"]["shoulder"],
                      4.0)


def test_a_lagging_mixers_steps_are_timed_by_the_period_they_were_mixed_in(tmp_path):
    # From window 2 on, every command lands one window after its base action (a lockstep timeout,
    # then the mixer one behind). The residual steps by 3 N m a period while nominal (within g * eps)
    # and decays bumplessly from period 10, whose stamp is the mixer's fallback stamp. Timed by the
    # window it landed in, the last nominal step (period 9's command, in window 10) would fall in
    # the fallback's window; timed by its base action's state, only the decay is measured.
    base, fallback = [10.0, -5.0], 10
    r = {j: [0.5 if j % 2 == 0 else 3.5, 0.0] for j in range(fallback)}
    for j in range(fallback, 30):
        r[j] = [r[fallback - 1][0] * max(0.0, 1.0 - (j - fallback + 1) * 0.05), 0.0]
    windows = [(base, [np.add(base, r[0]).tolist()], True, True), (base, [], True, False)]
    windows += [(base, [np.add(base, r[k - 1]).tolist()], True, True) for k in range(2, 30)]
    steps: list = []
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "stop", steps=steps)
    assert c["total"] == 0 and c["lagging_commands"] == 28, c
    assert [round(t, 3) for t, _, _ in steps[2:5]] == [0.02, 0.03, 0.04]  # the base action's state
    modes = [(0.0, "nominal"), (0.01 * (fallback + 1), "fallback")]
    f = transition_steps(steps, modes, JOINTS, 0.01, CFG)["fallback"]
    assert f["applied_residual"]["shoulder"] == pytest.approx(3.5 * 0.05), f
    assert f["applied_residual"]["shoulder"] <= f["bound"]["shoulder"]


def test_the_probe_check_allows_the_resume_blend_and_nothing_beyond_it():
    from residual_control.harness.closed_loop import check_commands

    ns = types.SimpleNamespace
    cfg = types.SimpleNamespace(**{**CFG.__dict__, "fallback_ramp_time": 0.1})
    base = np.array([20.0, -10.0])
    bases = [ns(t=0.0, names=list(JOINTS), values=np.array([1.0, 0.0]))]
    bases += [ns(t=1.0 + k * 0.02, names=list(JOINTS), values=base) for k in range(30)]
    cmds = [ns(t=0.0, values=np.array([1.0, 0.0]))]
    cmds += [ns(t=0.5 + k * 0.1, values=np.zeros(2)) for k in range(4)]  # zero while the base is gone
    cmds += [ns(t=1.0 + k * 0.02, values=base * min(k / 5, 1.0)) for k in range(30)]  # 0.1 s blend
    c = check_commands(cmds, bases, JOINTS, cfg, "zero")
    assert c["total"] == 0 and c["resume_commands"] >= 3, c
    cmds[7] = ns(t=cmds[7].t, values=np.array([-8.0, 0.0]))  # beyond the stale command and the band
    assert check_commands(cmds, bases, JOINTS, cfg, "zero")["residual_bound"] == 1
    late = cmds[:5] + [ns(t=1.0 + k * 0.02, values=base * min(k / 60, 1.0)) for k in range(30)]  # too slow
    assert check_commands(late, bases, JOINTS, cfg, "zero")["residual_bound"] >= 10


def test_a_base_action_lost_to_the_sim_at_a_kill_is_judged_by_the_mixers_report(tmp_path):
    # The killed base controller's last action reached the mixer (which mixed and reported its
    # applied residual for that state) but not the sim: only right at a declared kill, and only
    # with a report within g * eps, is that command not `unbased`.
    def record(report):
        rec = SinkRecorder(str(tmp_path / "k.txt"))
        commands = [[1.0, 1.0], [1.0, 1.0], [2.0, 1.0], [5.0, 1.0]]
        for k, base in enumerate([[0.0, 0.0], [0.0, 0.0], None, None]):
            ns = 10_000_000 * (k + 1)
            rec.state(_stamp(ns))
            if base is not None:
                rec.base(_base_msg(ns, base))
            if k == 2:
                rec.applied(types.SimpleNamespace(header=types.SimpleNamespace(stamp=_stamp(ns)),
                                                  name=list(JOINTS), effort=report))
            rec.command(commands[k])
            rec.step(ns, True)
        rec.close()
        return read_record(tmp_path / "k.txt")

    c = check_sink_record(record([1.0, 1.0]), JOINTS, CFG, "hold", kills=[0.03])
    assert c["base_lost_at_kill"] == 1 and c["unbased"] == 1 and c["total"] == 1, c  # one report, one command
    assert check_sink_record(record([1.0, 1.0]), JOINTS, CFG, "hold")["unbased"] == 2  # no kill declared
    assert check_sink_record(record([9.0, 1.0]), JOINTS, CFG, "hold", kills=[0.03])["unbased"] == 2  # > g*eps
    assert check_sink_record(record([1.0, 1.0]), JOINTS, CFG, "hold", kills=[0.5])["unbased"] == 2  # not near


def test_a_stale_command_that_fits_by_chance_does_not_end_the_blind_start(tmp_path):
    # zero: the mixer sends clip(0) until it has a base action. The sim hears the base controller
    # first; clip(0) fits the first (small) base action by chance and not the next: still no
    # violation, the mixer had no base yet. Its first mixed command ends the blind start.
    windows = [([1.0, 0.5], [[0.0, 0.0]], True, True), ([9.0, 5.0], [[0.0, 0.0]], True, True),
               ([9.0, 5.0], [[10.0, 5.0]], True, True), ([9.0, 5.0], [[0.0, 0.0]], True, True)]
    c = check_sink_record(_write(tmp_path / "r.txt", windows), JOINTS, CFG, "zero")
    assert c["stale_behavior_commands"] == 1, c  # window 2
    # After the mixer's first mixed command, clip(0) in a window with a base action is a violation
    # (and no resume: the mixer never resumes from a stale output sent before its first mix).
    assert c["residual_bound"] == 1 and c["total"] == 1 and c["resume_commands"] == 0, c


def test_a_stale_output_the_mixer_reported_in_a_window_with_a_base_action_is_judged_as_stale(tmp_path):
    # A starved base controller: its action for the state reached the sim, not the mixer in time; the
    # mixer sent its stale output (zero) and reported an applied residual of zero for that state.
    def record(report):
        rec = SinkRecorder(str(tmp_path / "s.txt"))
        for k, (base, cmd) in enumerate([([2.0, 0.0], [2.0, 0.0]), ([9.0, 5.0], [0.0, 0.0]),
                                         ([9.0, 5.0], [9.0, 5.0])]):
            ns = 10_000_000 * (k + 1)
            rec.state(_stamp(ns))
            rec.base(_base_msg(ns, base))
            if k == 1 and report is not None:
                rec.applied(types.SimpleNamespace(header=types.SimpleNamespace(stamp=_stamp(ns)),
                                                  name=list(JOINTS), effort=report))
            rec.command(cmd)
            rec.step(ns, True)
        rec.close()
        return read_record(tmp_path / "s.txt")

    c = check_sink_record(record([0.0, 0.0]), JOINTS, CFG, "zero")
    assert c["total"] == 0 and c["stale_in_base_windows"] == 1, c
    assert check_sink_record(record(None), JOINTS, CFG, "zero")["residual_bound"] == 1  # no report: a violation
    assert check_sink_record(record([0.0, 0.0]), JOINTS, CFG, "hold")["residual_bound"] == 1  # not the held [2, 0]
    assert check_sink_record(record([1.0, 0.0]), JOINTS, CFG, "zero")["residual_bound"] == 1  # a residual was mixed
