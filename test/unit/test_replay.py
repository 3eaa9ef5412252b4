"""logs.replay: the core loop re-run on a logged run reproduces it, names where a log differs, and checks another model.

The logged runs are :class:`~residual_control.logs.episode.Episode` s made by the core loop on the
MuJoCo plant (logs.simulated), with the mixer's order as the fused node takes it and as the separate
nodes take it (the base action sometimes first). The other model's numbers are checked against
closed forms computed here from the episode's arrays.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residual_control.core.envelope import METADATA_KEY
from residual_control.core.observation import default_observation_names
from residual_control.harness.synthetic_models import constant_model
from residual_control.logs import replay as replay_mod
from residual_control.logs.replay import MAX_PENDING, ReplayError, replay
from residual_control.logs.simulated import simulate_episode
from residual_control.logs.topics import META_PARAMS
from residual_control.paths import default_params_file

from support import ROOT

MODEL = str(ROOT / "models" / "residual_bc.onnx")
JOINTS = ("shoulder", "elbow")
OBS = default_observation_names(JOINTS, ("payload_mass",))
LIMIT = (20.0, 8.0)
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])


def _params(node: str = "residual_mixer", **values) -> str:
    """Return the package's params file with ``values`` set under ``node`` (``/**``: every node's)."""
    data = yaml.safe_load(open(default_params_file(), encoding="utf-8").read())
    if values:
        data.setdefault(node, {}).setdefault("ros__parameters", {}).update(values)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def params() -> str:
    return _params()


@pytest.fixture(scope="module")
def graph_episode(params):
    """Log the separate nodes' order: the base action reaches the mixer before its residual in 30 % of the periods."""
    return simulate_episode(params, MODEL, seconds=3.0, order=0.3, seed=1)


@pytest.fixture(scope="module")
def fused_episode(params):
    return simulate_episode(params, MODEL, seconds=2.5, order="same", seed=2)


def _copy(ep, **arrays):
    return dataclasses.replace(ep, **{k: getattr(ep, k).copy() for k in arrays}, metadata=dict(ep.metadata))


# ---------------------------------------------------------------------- reproduction
@pytest.mark.parametrize("events", [True, False], ids=["logged-order", "order-read-from-the-applied-residual"])
def test_an_episode_of_the_core_loop_replays_exactly(graph_episode, events):
    ep = graph_episode if events else dataclasses.replace(graph_episode, events=None)
    report = replay(ep)
    assert report.mode == "reproduce" and report.reproduced, report.table()
    for stage in ("base", "residual", "command"):
        s = report.stage(stage)
        assert s.max_abs < 1e-9 and s.mismatch is None, (stage, s)
        # the shipped model's low-pass: its first 43 periods from the first logged residual are not compared
        assert s.compared == ep.periods if stage != "residual" else ep.periods - 43 <= s.compared < ep.periods
    pos = {(kind, k): i for i, (_, kind, k) in enumerate(graph_episode.events)}
    previous = sum(1 for k in range(ep.periods) if pos.get(("residual", k), -1) > pos[("base", k)])
    assert previous > 10  # the log does mix with the residual before, often
    if events:
        assert report.order["previous"] == previous
    else:  # read where the applied residual tells (not during a fallback or a ramp's start)
        assert 0 < report.order["previous"] <= previous
    assert report.stats.violations == 0 and report.stats.max_abs_delta == [0.0, 0.0]


def test_inputs_that_reach_the_nodes_late_are_found_where_the_log_shows_them(params):
    """The reference, perception and joint state race to the nodes: replay finds which each node held."""
    from residual_control.logs.replay import load_policy, node_sections, params_of, replay_base, replay_policy

    ep = simulate_episode(params, MODEL, seconds=3.0, order=0.3, race=0.25, seed=5)
    truth = ep.metadata["simulated_races"]
    assert all(len(v) > 10 for v in truth.values()), truth
    report = replay(dataclasses.replace(ep, events=None))
    assert report.reproduced, report.table()
    sections = node_sections(params_of(params))
    base = replay_base(ep, sections["base_controller"])
    logged_ref = np.isfinite(ep.q_ref[:, 0])
    late = set(np.flatnonzero((base.reference > 0) | ((base.reference < 0) & logged_ref)).tolist())
    assert late == set(truth["base_reference_late"])
    model = load_policy(MODEL, sections["residual_policy"], sections["base_controller"])
    policy = replay_policy(ep, model, sections["residual_policy"], logged=ep.residual)
    seen = np.isfinite(ep.residual[:, 0])  # where the log shows what the policy held
    late = set(np.flatnonzero(seen & ((policy.reference > 0) | ((policy.reference < 0) & logged_ref))).tolist())
    assert late == {k for k in truth["policy_reference_late"] if seen[k]}
    # a state hardly different from the one before (the arm at rest at the start) cannot be told apart
    step = np.abs(np.diff(ep.q, axis=0)).max(axis=1) + np.abs(np.diff(ep.qd, axis=0)).max(axis=1)
    moved = np.r_[True, step > 1e-4]
    assert policy.state_previous == sum(seen[k] and moved[k] for k in truth["policy_previous_state"])
    assert policy.perception_late == sum(seen[k] for k in truth["perception_late"])
    assert policy.perception_early == 0
    # without the search (the log's reference and perception at t[k]), the log is not reproduced
    blind = replay_policy(ep, model, sections["residual_policy"])
    assert np.nanmax(np.abs(blind.residual - ep.residual)) > 1e-3


def test_a_mixer_whose_clock_lags_a_period_replays_through_its_ramp(params):
    """The mixer's clock still reads the period before in 30 % of the periods (its clock message came late).

    Seed 2 has the clock behind at the row before the recovery ramp's logged end: the row is still
    recovering while the logged transition to nominal reads the row's own time (the next row's, at the
    lagging clock). The order of the inputs is not given: replay searches it.
    """
    ep = simulate_episode(params, MODEL, seconds=2.0, order=0.3, clock_lag=0.3, seed=2)
    behind = ep.metadata["simulated_races"]["mixer_clock_behind"]
    assert len(behind) > 30
    ramp_end = next(t for t, text in ep.modes if text.startswith("nominal"))
    assert any(abs(ep.t[k] - ramp_end) < 1e-6 and k + 1 in behind for k in range(ep.periods - 1))
    report = replay(dataclasses.replace(ep, events=None))
    assert report.reproduced, report.table()
    assert report.stage("command").max_abs < 1e-9


def _recorded_from(ep, m: int):
    """Return the episode as a recorder started at row ``m`` logs it: rows from m, the latched mode, later ones."""
    t0 = ep.t[m]
    latched = [x for x in ep.modes if x[0] <= t0 + 1e-9][-1:]
    rows = {name: getattr(ep, name)[m:] for name in ("t", "q", "qd", "q_ref", "qd_ref", "command", "a_base",
                                                     "applied_residual", "residual", "perception", "reference_stamp",
                                                     "qdd_ref", "t_ns")}
    return dataclasses.replace(ep, **rows, modes=latched + [x for x in ep.modes if x[0] > t0 + 1e-9], events=None,
                               perception_messages=[x for x in ep.perception_messages if x[0] >= t0 - 1e-9],
                               metadata=dict(ep.metadata))


@pytest.mark.parametrize("late", [1, 10, 45])
def test_a_log_that_starts_while_the_mixer_holds_before_its_ramp_replays(params, late):
    """The recorder started ``late`` periods after the mixer took its first residual (a clean-clone CI run: 10).

    The log's latched mode is still the start-up fallback (holding before recovery is no transition);
    the replay's mixer holds from when the ramp's gain in the log says the hold began.
    """
    ep = simulate_episode(params, MODEL, seconds=2.0, order=0.3, seed=3)
    first = int(np.flatnonzero(np.isfinite(ep.residual[:, 0]))[0])
    log = _recorded_from(ep, first + late)
    assert log.modes[0][1].startswith(replay_mod.STARTUP_MODE)
    report = replay(log)
    assert report.reproduced, report.table()
    assert report.stage("command").max_abs < 1e-9 and report.stage("command").compared >= log.periods - 10
    assert any(n.startswith("mixer: the log starts while the mixer held residuals") for n in report.notes)
    # the shipped model filters its observation: its state from before the log is not compared, then it is
    assert any("its observation low-pass (10 Hz) and reference acceleration carries state the log does not show"
               in n for n in report.notes)
    assert report.stage("residual").compared >= log.periods - 60


@pytest.mark.parametrize("seconds", [0.1, 0.4])
def test_residuals_the_mixer_never_took_at_the_start_are_not_mixed(params, seconds):
    """The recorder found the policy before the mixer did: the log has residuals the mixer never took."""
    ep = simulate_episode(params, MODEL, seconds=2.0, order=0.3, mixer_first_residual=seconds, seed=3)
    report = replay(dataclasses.replace(ep, events=None))
    assert report.reproduced, report.table()
    assert report.stage("command").max_abs < 1e-9
    unseen = int(round(seconds / ep.control_dt)) - int(np.flatnonzero(np.isfinite(ep.residual[:, 0]))[0])
    note = next(n for n in report.notes if n.startswith("mixer: ") and "the mixer never took" in n)
    assert unseen - MAX_PENDING - 2 <= int(note.split()[1]) <= unseen, note
    # the same episode with the mixer taking them ramps in earlier: the log tells the two apart
    early = simulate_episode(params, MODEL, seconds=2.0, order=0.3, seed=3)
    assert np.max(np.abs(early.applied_residual - ep.applied_residual)) > 1e-3


def test_a_base_controller_that_found_the_joint_states_late_holds_its_own_first_position(params):
    """Its first joint state is a later row than the log's first; no reference for 0.7 s (a graph run: 0.58 s).

    Until a reference comes it holds that row's position, which the replay finds (the log's first row's
    position reproduced none of it; beyond HOLD_WARMUP those rows were compared and differed).
    """
    ep = simulate_episode(params, MODEL, seconds=1.5, order=0.3, reference_start=0.7, base_first_state=12, seed=4)
    assert not np.isfinite(ep.a_base[:12]).any() and np.isfinite(ep.a_base[12:]).all()
    report = replay(dataclasses.replace(ep, events=None))
    assert report.reproduced, report.table()
    base = report.stage("base")
    assert base.max_abs < 1e-9 and base.compared == ep.periods - 12
    assert report.inputs["base_holding"] >= 55


def test_the_fused_order_replays_exactly_and_says_so(fused_episode):
    report = replay(dataclasses.replace(fused_episode, events=None))
    assert report.reproduced and report.order["previous"] == 0
    assert "reproduced to 1e-06: yes" in report.table()


# ---------------------------------------------------------------------- a log that differs
def _nominal_rows(ep, field):
    arr = getattr(ep, field)
    return [k for k in range(ep.periods // 2, ep.periods - 1) if np.all(np.isfinite(arr[k]))]


@SETTINGS
@given(data=st.data(), field=st.sampled_from(["a_base", "residual", "command"]),
       delta=st.floats(1e-4, 5.0) | st.floats(-5.0, -1e-4))
def test_a_changed_value_is_named_with_its_stage_and_period(graph_episode, data, field, delta):
    ep = graph_episode
    k = data.draw(st.sampled_from(_nominal_rows(ep, field)))
    j = data.draw(st.integers(0, 1))
    bad = _copy(ep, **{field: True})
    getattr(bad, field)[k, j] += delta
    report = replay(bad)
    stage = {"a_base": "base", "residual": "residual", "command": "command"}[field]
    assert not report.reproduced
    m = report.stage(stage).mismatch
    assert m is not None and m.period == k and m.stage == stage, report.table()
    assert m.logged[j] == getattr(bad, field)[k, j]
    assert abs(m.logged[j] - m.recomputed[j]) == pytest.approx(abs(delta), rel=1e-6)
    assert not m.persistent and m.periods <= 2
    for earlier in ("base", "residual", "command")[:("base", "residual", "command").index(stage)]:
        assert report.stage(earlier).mismatch is None  # nothing before the changed stage
    text = report.table()
    assert f"{stage}: first mismatch at period {k}" in text and "Likely cause" in text
    if field == "command":
        assert "is not clip(a_base + applied residual)" in m.cause
    later = report.stage("command").mismatch
    if field == "residual" and later is not None:  # none where the mixer's clamp hid the change
        assert later.period in (k, k + 1) and "not the logged one" in later.cause, later


def test_commands_the_recorder_did_not_log_are_not_counted_but_a_long_silence_is(graph_episode):
    """A recorder that matched the mixer late, or dropped a sample, is not a mismatch; a mixer silent for longer is."""
    ep = graph_episode
    k = _nominal_rows(ep, "command")[5]
    dropped = _copy(ep, command=True, applied_residual=True)
    for arr in (dropped.command, dropped.applied_residual):
        arr[:4] = np.nan  # the recorder matched the commands publisher after the base action's
        arr[k] = np.nan   # one sample dropped
    report = replay(dropped)
    s = report.stage("command")
    assert report.reproduced and s.mismatch is None and s.max_abs < 1e-9, report.table()
    assert s.compared <= ep.periods - 5
    text = " ".join(report.notes)
    assert "before the log's first command message" in text and f"periods [{k}]" in text

    silent = _copy(ep, command=True, applied_residual=True)
    silent.command[k:k + replay_mod.SILENT_PERIODS] = np.nan
    silent.applied_residual[k:k + replay_mod.SILENT_PERIODS] = np.nan
    m = replay(silent).stage("command").mismatch
    assert m is not None and m.period == k and m.logged[0] != m.logged[0]  # the log has none there
    # A log known to be lossy (recorded on a loaded machine): the long run is not compared, and noted; a
    # wrong logged command is still found.
    lossy = replay(silent, lossy_log=True)
    assert lossy.stage("command").mismatch is None, lossy.table()
    assert "in runs of any length (lossy_log)" in " ".join(lossy.notes)
    wrong = _copy(silent, command=True)
    wrong.command[k + 10] += 0.01
    m = replay(wrong, lossy_log=True).stage("command").mismatch
    assert m is not None and m.period == k + 10


def test_every_silence_of_the_policy_is_listed_even_after_an_earlier_mismatch(graph_episode):
    """A policy that stopped publishing is named in the table wherever it happened, not only as the first mismatch."""
    ep = graph_episode
    rows = _nominal_rows(ep, "residual")
    early, k = rows[3], rows[40]
    n = replay_mod.SILENT_PERIODS + 4
    log = _copy(ep, residual=True)
    log.residual[early] += 0.5            # an isolated wrong residual first
    log.residual[k:k + n] = np.nan        # then the policy silent
    report = replay(log)
    res = report.stage("residual")
    assert res.mismatch is not None and res.mismatch.period == early
    assert res.silences == [[k, n, float(ep.t[k])]]
    assert [early, 1] in res.differing and [k, n] in res.differing
    assert f"the policy published none) for {n} periods from period {k}" in report.table()
    # a run shorter than SILENT_PERIODS is a dropped sample, not a silence
    short = _copy(ep, residual=True)
    short.residual[k:k + replay_mod.SILENT_PERIODS - 1] = np.nan
    assert replay(short).stage("residual").silences == []


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5))
def test_runs_of_gives_back_the_mask(bits, min_length):
    mask = np.array(bits, dtype=bool)
    runs = replay_mod.runs_of(mask, min_length)
    rebuilt = np.zeros(len(mask), dtype=bool)
    for k, n in runs:
        assert n >= min_length and mask[k:k + n].all()
        assert (k == 0 or not mask[k - 1]) and (k + n == len(mask) or not mask[k + n])
        rebuilt[k:k + n] = True
    assert np.array_equal(rebuilt, mask & _within_runs(mask, min_length))


def _within_runs(mask, min_length):
    """Return the True entries of ``mask`` in runs of at least ``min_length`` (counted one by one)."""
    out = np.zeros(len(mask), dtype=bool)
    for k in range(len(mask)):
        if mask[k]:
            lo = k
            while lo > 0 and mask[lo - 1]:
                lo -= 1
            hi = k
            while hi < len(mask) and mask[hi]:
                hi += 1
            out[k] = hi - lo >= min_length
    return out


def test_params_the_deployment_did_not_run_are_named(graph_episode, params):
    changed = _params("/**", kp=[61.0, 40.0])
    # the bag says kp 61 but the run used 60
    ep = dataclasses.replace(graph_episode, metadata={**graph_episode.metadata, META_PARAMS: changed})
    m = replay(ep).stage("base").mismatch
    assert m is not None and m.persistent and "params differ" in m.cause
    first_with_reference = int(np.flatnonzero(np.isfinite(ep.q_ref[:, 0]))[0])
    assert m.period >= first_with_reference
    # replayed with other params than the bag's: they are named
    report = replay(graph_episode, params=changed)
    assert report.params_differ == {"base_controller": ["kp"]}
    assert "kp (bag [60.0, 40.0], replay [61.0, 40.0])" in report.stage("base").mismatch.cause
    gain = replay(graph_episode, params=_params(residual_gain=0.5))
    assert gain.stage("base").mismatch is None and gain.stage("residual").mismatch is None
    m = gain.stage("command").mismatch
    assert m is not None and "residual_gain (bag 1.0, replay 0.5)" in m.cause


def test_the_mixer_pairing_a_base_action_with_the_previous_residual_is_named(graph_episode):
    ep = graph_episode
    events = list(ep.events)
    # a nominal period the mixer took residual-first: the replay is told base-first, and the other way round
    for wanted, first in (("same", "residual"), ("previous", "base")):
        k = next(k for k in range(ep.periods // 2, ep.periods)
                 if [e[1] for e in events if e[2] == k] == [first, "base" if first == "residual" else "residual"])
        i = next(i for i, e in enumerate(events) if e[2] == k)
        swapped = events[:i] + [events[i + 1], events[i]] + events[i + 2:]
        m = replay(dataclasses.replace(ep, events=swapped)).stage("command").mismatch
        assert m is not None and m.period == k and "arrival order" in m.cause, m
        other = "the same period" if wanted == "same" else f"the residual of period {k - 1}"
        assert other in m.cause


def test_another_model_is_refused_when_asked_to_reproduce(graph_episode, tmp_path):
    other = constant_model(str(tmp_path / "c.onnx"), JOINTS, OBS, LIMIT, (1.0, 1.0))
    with pytest.raises(ReplayError, match=r"expected the logged model \(sha256 [0-9a-f]{64}\).*found .*c\.onnx"):
        replay(graph_episode, other, reproduce=True)
    with pytest.raises(ReplayError, match="expected an ONNX file at --model"):
        replay(graph_episode, str(tmp_path / "missing.onnx"))
    with pytest.raises(ReplayError, match=r"joints \['shoulder', 'elbow'\]"):
        replay(graph_episode, params=_params("/**", joints=["a", "b"]))


# ---------------------------------------------------------------------- another model
@pytest.fixture(scope="module")
def quick_episode():
    """Log a run whose mixer runs the residual at full gain at once (no hold, no ramp), bound lowered on joint 0."""
    p = _params(recovery_hold_time=0.0, recovery_ramp_time=0.0, fallback_ramp_time=0.0, residual_limit=[10.0, 8.0])
    return simulate_episode(p, MODEL, seconds=2.0, order="same", seed=3)


def test_another_model_what_it_would_have_commanded(quick_episode, tmp_path):
    ep = quick_episode
    c = np.array([20.0, -4.0])  # at the model's bound on joint 0, inside on joint 1
    other = constant_model(str(tmp_path / "const.onnx"), JOINTS, OBS, LIMIT, c)
    report = replay(ep, other)
    assert report.mode == "compare" and [s.stage for s in report.stages] == ["base"]
    assert report.stage("base").mismatch is None
    st_ = report.stats
    # closed form: no residual before the first reference, then clip(a_base + clip(c, -eps, eps)) at full gain
    eps = np.array([10.0, 8.0])
    lo, hi = np.array([-60.0, -30.0]), np.array([60.0, 30.0])
    has_ref = np.isfinite(ep.q_ref[:, 0])
    expected = np.clip(ep.a_base + np.where(has_ref[:, None], np.clip(c, -eps, eps), 0.0), lo, hi)
    d = expected[1:] - expected[:-1]
    assert st_.smoothness_rms == pytest.approx(np.sqrt(np.mean(d ** 2, axis=0)).tolist(), abs=1e-9)
    dl = ep.command[1:] - ep.command[:-1]
    assert st_.logged_smoothness_rms == pytest.approx(np.sqrt(np.mean(dl ** 2, axis=0)).tolist(), abs=1e-12)
    assert st_.max_abs_delta == pytest.approx(np.max(np.abs(expected - ep.command), axis=0).tolist(), abs=1e-9)
    assert st_.residual_periods == int(has_ref.sum())
    assert st_.at_bound_share == 1.0 and st_.at_bound_share_per_joint == [1.0, 0.0]
    assert st_.clamped_share == pytest.approx(has_ref.sum() / ep.periods)  # joint 0: 20 clipped to 10
    assert st_.no_residual == {"no_reference": int((~has_ref).sum())}
    assert st_.envelope_exits == 0 and st_.violations == 0
    out = report.to_json()
    json.dumps(out)  # everything serialisable
    assert out["mode"] == "compare" and out["stats"]["at_bound_share"] == 1.0


def test_another_model_leaving_its_training_envelope(quick_episode, tmp_path):
    ep = quick_episode
    i = OBS.index("q/shoulder")
    centre = float(np.median(ep.q[:, 0]))
    low, high = [-1e3] * len(OBS), [1e3] * len(OBS)
    low[i], high[i] = centre - 0.1, centre + 0.1
    env = json.dumps({"names": list(OBS), "low": low, "high": high})
    other = constant_model(str(tmp_path / "env.onnx"), JOINTS, OBS, LIMIT, (1.0, 1.0),
                           extra_metadata={METADATA_KEY: env})
    report = replay(ep, other)
    # independently: runs of periods outside [low, high] (float32 observations) lasting the debounce (0.1 s)
    has_ref = np.isfinite(ep.q_ref[:, 0])
    x = ep.q[:, 0].astype(np.float32).astype(float)
    outside = has_ref & ((x < low[i]) | (x > high[i]))
    trips, start = 0, None
    for k in range(ep.periods):
        if outside[k]:
            start = k if start is None else start
            if ep.t[k] - ep.t[start] >= 0.1 - 1e-9 and (k == start or ep.t[k - 1] - ep.t[start] < 0.1 - 1e-9):
                trips += 1
        else:
            start = None
    assert trips >= 2
    st_ = report.stats
    assert st_.envelope_exits == trips
    assert st_.outside_share == pytest.approx(outside.sum() / ep.periods)
    assert st_.no_residual.get("out_of_envelope", 0) > 0
    assert st_.worst_envelope["feature"] == "q/shoulder"
    assert st_.violations == 0


# ---------------------------------------------------------------------- command line
def test_command_line(graph_episode, tmp_path, monkeypatch, capsys):
    from residual_control.cli import main

    logs = {"good.bag": graph_episode}
    bad = _copy(graph_episode, command=True)
    bad.command[200, 0] += 0.5
    logs["bad.bag"] = bad
    monkeypatch.setattr(replay_mod, "read_episode", lambda path: logs[path])
    out = tmp_path / "r.json"
    assert main(["replay", "good.bag", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reproduced to 1e-06: yes" in text and "command smoothness RMS" in text
    data = json.loads(out.read_text())
    assert data["reproduced"] is True and [s["stage"] for s in data["stages"]] == ["base", "residual", "command"]
    assert main(["replay", "bad.bag"]) == 1
    assert "command: first mismatch at period 200" in capsys.readouterr().out
    other = constant_model(str(tmp_path / "c.onnx"), JOINTS, OBS, LIMIT, (1.0, 1.0))
    assert main(["replay", "good.bag", "--model", other, "--reproduce"]) == 2
    assert "expected the logged model" in capsys.readouterr().err
    assert main(["replay", "good.bag", "--model", other]) == 0
    assert "periods at the residual bound" in capsys.readouterr().out


@pytest.mark.parametrize("lowpass", [None, "10.0"], ids=["raw", "lowpass-10hz"])
@pytest.mark.parametrize("race", [0.0, 0.25])
def test_a_model_reading_the_reference_acceleration_replays_exactly(params, tmp_path, race, lowpass):
    """The policy's qdd_ref and its observation low-pass (state from period to period) replay, races too.

    qdd_ref: the difference of the references the policy received.
    """
    from residual_control.core.observation import LOWPASS_METADATA_KEY
    from residual_control.harness.synthetic_models import linear_model

    obs = default_observation_names(JOINTS, ("payload_mass",), reference_acceleration=True)
    w = np.zeros((len(obs), 2), np.float32)
    w[obs.index("qdd_ref/shoulder"), 0], w[obs.index("qdd_ref/elbow"), 1] = 4.0, 2.0
    w[obs.index("e/shoulder"), 0] = 20.0
    model = linear_model(str(tmp_path / "qdd.onnx"), JOINTS, obs, LIMIT, weights=w,
                         extra_metadata={LOWPASS_METADATA_KEY: lowpass} if lowpass else None)
    ep = simulate_episode(params, model, seconds=2.0, order=0.3, race=race, seed=7)
    qdd = ep.reference_acceleration()
    assert np.nanmax(np.abs(qdd)) > 0.5  # the reference accelerates: the model's output depends on it
    report = replay(dataclasses.replace(ep, events=None))
    assert report.reproduced, report.table()
    assert report.stage("residual").max_abs < 1e-9


def test_a_stateful_model_in_a_log_whose_first_rows_lack_the_residual_replays(params):
    """A recorder that started mid-run and got the policy's first residuals a few periods late replays.

    The low-pass's state from before the log is not compared until it is forgotten; then the residual reproduces.
    """
    ep = simulate_episode(params, MODEL, seconds=2.0, order=0.3, seed=3)
    first = int(np.flatnonzero(np.isfinite(ep.residual[:, 0]))[0])
    log = _recorded_from(ep, first + 45)
    residual = log.residual.copy()
    residual[:3] = np.nan  # the recorder's first three periods without the policy's residual
    report = replay(dataclasses.replace(log, residual=residual))
    assert report.reproduced, report.table()
    assert any("carries state the log does not show" in n for n in report.notes)
