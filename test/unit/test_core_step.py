"""core.step: the residual loop's one step and its rules (reference hold, perception, envelope, model errors).

The loop is checked against the sequence of core calls the fused node made
before it existed (base controller, observation, policy, mixer), on arbitrary
joint states, so the nodes, the training env and the evaluation that call it
run the same step.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residual_control.core.base_controllers import make_base_controller
from residual_control.robot.nominal import nominal_model
from residual_control.core.envelope import METADATA_KEY
from residual_control.core.mixer import Mixer, MixerConfig
from residual_control.core.observation import default_observation_names
from residual_control.core.policy import PolicyExpectations
from residual_control.core.step import (REFERENCE_ACCELERATION_MAX_GAP, REFERENCE_SHIFT_MAX, LoadedPolicy,
                                        PolicyStep, ReferenceAcceleration, ReferenceHold, ResidualLoop, Skip,
                                        perception_lost)
from residual_control.harness.synthetic_models import constant_model, linear_model
from residual_control.training.common.config import load_params_file

JOINTS = ("shoulder", "elbow")
FEATURES = ("payload_mass",)
LIMIT = (20.0, 8.0)
OBS = default_observation_names(JOINTS, FEATURES)
EXPECT = PolicyExpectations(JOINTS, LIMIT, 100.0, FEATURES)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])
finite = st.floats(-3.0, 3.0)
vec = st.lists(finite, min_size=2, max_size=2).map(np.array)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("step_models")
    w = np.zeros((len(OBS), 2), np.float32)
    w[OBS.index("e/shoulder"), 0] = 30.0
    w[OBS.index("a_base/elbow"), 1] = 0.5
    w[OBS.index("perception/payload_mass"), 0] = 2.0
    low, high = [-1e3] * len(OBS), [1e3] * len(OBS)
    i = OBS.index("qd/shoulder")
    low[i], high[i] = -1.0, 1.0
    env = json.dumps({"names": list(OBS), "low": low, "high": high})
    return {
        "linear": linear_model(str(tmp / "linear.onnx"), JOINTS, OBS, LIMIT, weights=w),
        "enveloped": constant_model(str(tmp / "env.onnx"), JOINTS, OBS, LIMIT, (3.0, -1.5),
                                    extra_metadata={METADATA_KEY: env}),
        "unbounded": constant_model(str(tmp / "unbounded.onnx"), JOINTS, OBS, LIMIT, (99.0, 0.0), bounded=False),
        "no_perception": constant_model(str(tmp / "np.onnx"), JOINTS, default_observation_names(JOINTS), LIMIT,
                                        (1.0, 1.0)),
    }


def _step(model_path, timeout=0.5, debounce=0.05) -> PolicyStep:
    loaded = LoadedPolicy(model_path, "", EXPECT)
    loaded.configure_envelope(True, debounce, 0.0)
    return PolicyStep(loaded, JOINTS, timeout)


# ---------------------------------------------------------------------- ReferenceHold
@SETTINGS
@given(q0=vec, q1=vec, ref=vec, ref_v=vec)
def test_reference_hold_holds_the_first_position_until_a_reference(q0, q1, ref, ref_v):
    hold = ReferenceHold(2)
    assert not hold.holding and not hold.received
    q_ref, qd_ref, started = hold.resolve(q0)
    assert started and hold.holding and np.array_equal(q_ref, q0) and np.array_equal(qd_ref, np.zeros(2))
    q0[:] = 99.0  # the hold is a copy of the measured position
    q_ref, qd_ref, started = hold.resolve(q1)
    assert not started and not np.array_equal(q_ref, q1) or np.array_equal(q1, q_ref)
    assert np.all(q_ref != 99.0)
    hold.set(ref, ref_v)
    q_ref, qd_ref, started = hold.resolve(q1)
    assert hold.received and not hold.holding and not started
    assert q_ref is ref and qd_ref is ref_v


def test_reference_hold_starts_only_once():
    hold = ReferenceHold(2)
    assert [hold.resolve(np.array([0.1 * k, 0.0]))[2] for k in range(3)] == [True, False, False]
    assert np.array_equal(hold.q_ref, [0.0, 0.0])
    hold.set(np.ones(2), np.zeros(2))
    assert hold.resolve(np.full(2, 5.0))[2] is False and np.array_equal(hold.q_ref, np.ones(2))


@SETTINGS
@given(ref=vec, ref_v=vec, t_ref=st.floats(1.0, 1e5), shift=st.floats(-1.0, 1.0))
def test_a_stamped_reference_is_evaluated_at_the_joint_states_stamp(ref, ref_v, t_ref, shift):
    """q_ref + qd_ref (t - t_ref), the shift clipped to +-REFERENCE_SHIFT_MAX; the velocity unchanged."""
    hold = ReferenceHold(2)
    hold.set(ref, ref_v, t_ref)
    q_ref, qd_ref, started = hold.resolve(np.zeros(2), t_ref + shift)
    clipped = min(max(shift, -REFERENCE_SHIFT_MAX), REFERENCE_SHIFT_MAX)
    assert not started and qd_ref is ref_v
    np.testing.assert_allclose(q_ref, ref + ref_v * clipped, rtol=1e-9, atol=1e-6 * (1 + abs(t_ref)))
    assert np.all(np.abs(q_ref - ref) <= np.abs(ref_v) * REFERENCE_SHIFT_MAX + 1e-6 * (1 + abs(t_ref)))


def test_an_unstamped_reference_and_an_unstamped_state_use_the_reference_as_it_is():
    hold = ReferenceHold(2)
    ref, ref_v = np.array([0.1, 0.2]), np.array([1.0, -1.0])
    hold.set(ref, ref_v, 0.0)  # stamp 0: ros2 topic pub without a header
    assert hold.resolve(np.zeros(2), 123.0)[0] is ref
    hold.set(ref, ref_v, 10.0)
    assert hold.resolve(np.zeros(2), None)[0] is ref
    np.testing.assert_allclose(hold.resolve(np.zeros(2), 10.02)[0], ref + 0.02 * ref_v)


def test_the_loop_and_the_policy_use_the_reference_at_the_states_stamp(models):
    """The base controller and the model see the same reference, carried to the joint state's stamp."""
    step = _step(models["linear"])
    seen = {}
    real = step.model.residual

    def spy(q, qd, q_ref, qd_ref, a_base, perception, now, *rest):
        seen["policy"] = np.array(q_ref)
        return real(q, qd, q_ref, qd_ref, a_base, perception, now, *rest)

    step.model.residual = spy
    controller, mixer = _parts()
    loop = ResidualLoop(JOINTS, controller, step, mixer)
    step.set_perception(np.array([0.2]), 1.0)
    ref, ref_v = np.array([0.3, 0.4]), np.array([0.5, -0.5])
    loop.reference.set(ref, ref_v, 1.00)
    q = np.array([0.3, 0.4])
    out = loop.step(q, np.zeros(2), 1.03, 1.03)
    expected = ref + 0.03 * ref_v
    np.testing.assert_allclose(seen["policy"], expected)
    np.testing.assert_allclose(out.a_base, controller.compute(q, np.zeros(2), expected, ref_v, 1.03))


# ---------------------------------------------------------------------- perception_lost
@given(now=st.floats(0, 1e4), age=st.floats(-10, 10), timeout=st.floats(0.001, 5))
def test_perception_lost_exactly_when_older_than_the_timeout(now, age, timeout):
    """Fresh within the timeout either way; received further after ``now``: the clock went back, lost."""
    received = now - age
    why = perception_lost(now, received, timeout)
    assert (why == "") == (abs(now - received) <= timeout)
    if why:
        assert "perception lost: last" in why and f"perception_timeout {timeout:g} s" in why
        assert ("the clock went back" in why) == (now < received)
    assert perception_lost(now, None, timeout).startswith("perception lost: never received")


def test_perception_from_before_a_clock_jump_back_is_lost(models):
    """A simulator reset: perception received up to t=100, the clock restarts at 0 and none comes."""
    step = _step(models["linear"], timeout=0.5)
    step.reference.set(np.zeros(2), np.zeros(2))
    step.set_perception(np.array([0.5]), 100.0)
    assert step.step(np.zeros(2), np.zeros(2), np.zeros(2), 100.01).skip is None
    out = step.step(np.zeros(2), np.zeros(2), np.zeros(2), 3.0)
    assert out.residual is None and out.skip is Skip.PERCEPTION_LOST and "the clock went back" in out.why
    step.set_perception(np.array([0.5]), 3.01)  # fresh perception after the reset: residuals again
    assert step.step(np.zeros(2), np.zeros(2), np.zeros(2), 3.02).skip is None


# ---------------------------------------------------------------------- PolicyStep
def test_policy_step_needs_a_reference_then_fresh_perception(models):
    step = _step(models["linear"], timeout=0.2)
    z = np.zeros(2)
    out = step.step(z, z, z, 0.0)
    assert out.residual is None and out.skip is Skip.NO_REFERENCE and out.why == "no reference received"
    step.reference.resolve(np.ones(2))  # a held position is not a reference
    assert step.step(z, z, z, 0.0).skip is Skip.NO_REFERENCE
    step.reference.set(np.array([0.1, 0.0]), z)
    out = step.step(z, z, z, 0.0)
    assert out.skip is Skip.PERCEPTION_LOST and "never received" in out.why
    step.set_perception(np.array([0.5]), 1.0)
    out = step.step(z, z, z, 1.2)
    assert out.skip is None and out.names == list(JOINTS)
    # e/shoulder 0.1 * 30 + payload 0.5 * 2: the linear model's closed form.
    assert out.residual == pytest.approx([4.0, 0.0], abs=1e-5)
    out = step.step(z, z, z, 1.2001)
    assert out.skip is Skip.PERCEPTION_LOST and "last 0.200 s ago" in out.why
    step.perception_timeout = 1.0
    assert step.step(z, z, z, 1.2001).skip is None


def test_policy_step_ignores_perception_when_the_model_does_not_use_it(models):
    step = _step(models["no_perception"], timeout=0.01)
    step.reference.set(np.zeros(2), np.zeros(2))
    out = step.step(np.zeros(2), np.zeros(2), np.zeros(2), 100.0)
    assert out.skip is None and out.residual == pytest.approx([1.0, 1.0])


def test_policy_step_model_errors_and_bad_inputs_are_reported_not_raised(models):
    step = _step(models["unbounded"])
    step.reference.set(np.zeros(2), np.zeros(2))
    step.set_perception(np.array([0.5]), 0.0)
    out = step.step(np.zeros(2), np.zeros(2), np.zeros(2), 0.0)
    assert out.residual is None and "expected |value| <= [20.0, 8.0]" in out.why
    # the model's fault (a PolicyOutputError is a ValueError too): counted as a model error, not bad input
    assert out.skip is Skip.MODEL_ERROR and out.model_error
    step = _step(models["linear"])
    step.reference.set(np.zeros(2), np.zeros(2))
    step.set_perception(np.array([0.5]), 0.0)
    out = step.step(np.array([np.nan, 0.0]), np.zeros(2), np.zeros(2), 0.0)
    assert out.skip is Skip.BAD_INPUT and not out.model_error and "expected finite" in out.why
    out = step.step(np.zeros(3), np.zeros(2), np.zeros(2), 0.0)
    assert out.skip is Skip.BAD_INPUT and "expected 2 values" in out.why


def test_policy_step_envelope_debounce_counts_trips_and_reports_transitions(models):
    step = _step(models["enveloped"], debounce=0.05)
    step.reference.set(np.zeros(2), np.zeros(2))
    step.set_perception(np.array([0.5]), 0.0)
    z, fast = np.zeros(2), np.array([3.0, 0.0])
    events, skips = [], []
    for k, qd in enumerate([z] * 2 + [fast] * 8 + [z] * 2 + [fast] * 7):
        out = step.step(z, qd, z, k * 0.01)
        events.append(out.envelope)
        skips.append(out.skip)
    # Outside from step 2; tripped at 0.05 s outside (step 7) until back inside (step 10).
    assert skips == [None] * 7 + [Skip.OUT_OF_ENVELOPE] * 3 + [None] * 7 + [Skip.OUT_OF_ENVELOPE] * 2
    assert [i for i, e in enumerate(events) if e] == [7, 10, 17]
    assert [events[i] for i in (7, 10, 17)] == ["tripped", "cleared", "tripped"]
    assert step.envelope_trips == 2 and step.envelope_trip_times == [0.07, 0.17]
    assert step.envelope_last.startswith("out_of_envelope: qd/shoulder = 3")
    assert step.envelope_state() == "out_of_envelope"
    step.model.configure_envelope(False, 0.05, 0.0)
    assert step.envelope_state() == "off (envelope_check false)"
    assert step.step(z, fast, z, 0.3).skip is None


def test_a_live_margin_change_keeps_a_tripped_envelope_check_tripped(models):
    """Only an observation inside (the new, wider or narrower, envelope) clears it; not the change itself."""
    step = _step(models["enveloped"], debounce=0.05)
    step.reference.set(np.zeros(2), np.zeros(2))
    step.set_perception(np.array([0.5]), 0.0)
    z, fast = np.zeros(2), np.array([3.0, 0.0])  # qd/shoulder envelope [-1, 1]
    skips = [step.step(z, fast, z, k * 0.01).skip for k in range(10)]
    assert skips[-1] is Skip.OUT_OF_ENVELOPE
    step.model.configure_envelope(True, 0.05, 0.1)  # a live envelope_margin change: still outside
    assert [step.step(z, fast, z, 0.1 + k * 0.01).skip for k in range(5)] == [Skip.OUT_OF_ENVELOPE] * 5
    assert step.envelope_trips == 1
    step.model.configure_envelope(True, 0.05, 2.0)  # widened past 3.0: the next observation is inside
    assert step.step(z, fast, z, 0.2).skip is None


def test_policy_step_reads_a_swapped_model(models):
    step = _step(models["linear"])
    step.reference.set(np.zeros(2), np.zeros(2))
    step.set_perception(np.array([0.0]), 0.0)
    assert step.step(np.zeros(2), np.zeros(2), np.zeros(2), 0.0).residual == pytest.approx([0.0, 0.0])
    step.model = LoadedPolicy(models["no_perception"], "", EXPECT)
    assert step.step(np.zeros(2), np.zeros(2), np.zeros(2), 0.0).residual == pytest.approx([1.0, 1.0])


# ---------------------------------------------------------------------- ResidualLoop
_PF = load_params_file()


def _parts():
    pf = _PF
    mp = {**pf["mixer_params"], "joints": list(JOINTS)}
    controller = make_base_controller(pf["base_params"], nominal_model(pf["base_params"]))
    return controller, Mixer(MixerConfig.from_params(mp))


def _old_sequence(controller, policy: PolicyStep, mixer: Mixer, q, qd, stamp, now):
    """Run the fused node's step as it was before core.step: the same core calls, written out."""
    ref = policy.reference
    if ref.q_ref is None:
        ref.q_ref, ref.qd_ref = q.copy(), np.zeros(2)
    mixer.update_state(JOINTS, q, qd, now)
    a_base = controller.compute(q, qd, ref.q_ref, ref.qd_ref, stamp)
    model = policy.model
    residual = None
    if ref.received and (policy.perception_time is not None and now - policy.perception_time
                         <= policy.perception_timeout):
        residual = model.residual(q, qd, ref.q_ref, ref.qd_ref, a_base, policy.perception, now).residual
    if residual is not None:
        mixer.update_residual(model.joint_names, residual, stamp, now)
    return a_base, residual, mixer.step(JOINTS, a_base, stamp, now)


@settings(SETTINGS, max_examples=25)
@given(states=st.lists(st.tuples(vec, vec), min_size=1, max_size=25),
       reference_at=st.integers(0, 30), perception_until=st.integers(0, 30))
def test_residual_loop_equals_the_sequence_of_core_calls(models, states, reference_at, perception_until):
    loops = []
    for _ in range(2):
        controller, mixer = _parts()
        loops.append((controller, _step(models["linear"], timeout=0.05), mixer))
    loop = ResidualLoop(JOINTS, loops[1][0], loops[1][1], loops[1][2])
    ref = (np.array([0.3, -0.2]), np.array([0.1, 0.0]))
    for k, (q, qd) in enumerate(states):
        t = 0.01 * k
        for _, policy, _ in loops:
            if k == reference_at:
                policy.reference.set(*ref)
            if k <= perception_until:
                policy.set_perception(np.array([0.4 + 0.01 * k]), t)
        a_base, residual, out = _old_sequence(*loops[0], q, qd, t, t + 0.001)
        step = loop.step(q, qd, t, t + 0.001)
        assert step.hold_started == (k == 0 < reference_at) and not step.base_error and not step.rejected
        assert np.array_equal(step.a_base, a_base)
        assert (step.policy.residual is None) == (residual is None)
        if residual is not None:
            assert np.array_equal(step.policy.residual, residual)
        assert np.array_equal(step.output.command, out.command) and step.output.mode == out.mode
        assert np.array_equal(step.output.applied_residual, out.applied_residual)


def test_residual_loop_reports_base_errors_and_rejected_residuals(models):
    controller, mixer = _parts()
    policy = _step(models["linear"])
    loop = ResidualLoop(JOINTS, controller, policy, mixer)
    assert loop.reference is policy.reference
    step = loop.step(np.array([0.0, np.nan]), np.zeros(2), 0.0, 0.0)
    assert step.hold_started and step.base_error and step.output is None and step.policy is None
    assert "expected" in step.base_error
    policy.reference.set(np.zeros(2), np.zeros(2))
    policy.set_perception(np.array([0.0]), 1.0)
    step = loop.step(np.zeros(2), np.zeros(2), 1.0, 1.0)
    assert step.policy.residual is not None and not step.rejected and step.output.command is not None
    loop.controller = SimpleNamespace(compute=lambda q, qd, q_ref, qd_ref, t: np.zeros(2))  # takes any stamp
    step = loop.step(np.zeros(2), np.zeros(2), float("inf"), 1.01)
    assert step.policy.residual is not None and step.output is not None
    assert step.rejected == "residual: expected a finite stamp, found inf"


def test_residual_loop_parts_for_an_external_policy():
    controller, mixer = _parts()
    loop = ResidualLoop(JOINTS, controller, None, mixer)
    loop.reference.set(np.array([0.2, 0.1]), np.zeros(2))
    a_base, started = loop.base_action(np.zeros(2), np.zeros(2), 0.0)
    assert not started and np.array_equal(a_base, _parts()[0].compute(np.zeros(2), np.zeros(2),
                                                                        np.array([0.2, 0.1]), np.zeros(2), 0.0))
    rejected, out = loop.mix(a_base, 0.0, 0.0, np.array([1.0, -100.0]), JOINTS)
    assert rejected == "" and out.command is not None
    assert np.all(np.abs(out.applied_residual) <= np.asarray(LIMIT) + 1e-9)


# ---------------------------------------------------------------------- the training env and the evaluation
@pytest.mark.parametrize("delay", [0, 1, 2])
def test_env_step_is_the_runtime_sequence_of_core_calls(delay):
    """training.env runs the loop's base action and mix: equal to the core calls written out, bit for bit."""
    from residual_control.training.env import ResidualEnv

    env = ResidualEnv(residual_delay_steps=delay, base_gain_randomization=0.0, seed=3)
    obs, _ = env.reset(seed=4)
    controller = make_base_controller(env.base_params, env.nominal)
    mixer = Mixer(env.mixer_config)
    queue = []
    rng = np.random.default_rng(7)
    for _ in range(120):
        t = env.time
        a_base = controller.compute(env.q_meas, env.qd_meas, env.q_ref, env.qd_ref, t)
        assert np.array_equal(env.a_base, a_base)
        assert np.array_equal(obs, env.assembler.assemble(env.q_meas, env.qd_meas, env.q_ref, env.qd_ref, a_base,
                                                          env.perception))
        action = rng.uniform(-1.5, 1.5, env.n)
        queue.append((np.clip(action, -1, 1) * env.residual_limit, t))
        if len(queue) > delay:
            da, stamp = queue.pop(0)
            mixer.update_residual(env.joints, da, stamp, t)
        out = mixer.step(env.joints, a_base, t, t)
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.array_equal(info["command"], out.command)
        assert np.array_equal(info["applied_residual"], out.applied_residual)
        assert not terminated and not truncated


def test_evaluation_runs_the_runtime_policy_step_on_the_env_state(models, monkeypatch):
    """training.evaluate.RuntimePolicy: the policy node's step on the env's state; its residual is the model's."""
    from residual_control.training import evaluate
    from residual_control.training.env import ResidualEnv

    env = ResidualEnv(base_gain_randomization=0.0, seed=3)
    env.reset(seed=4)
    policy = evaluate.RuntimePolicy(models["linear"])
    for _ in range(20):
        da = policy(env)
        expected = policy.runner.infer(env.assembler.assemble(env.q_meas, env.qd_meas, env.q_ref, env.qd_ref,
                                                              env.a_base, env.perception))
        assert np.array_equal(da, expected)  # the env's joint order is the model's here
        env.step(da / env.residual_limit)
    assert policy.stats["envelope"] is False and policy.stats["outside_steps"] == 0
    bad = evaluate.RuntimePolicy(models["unbounded"])
    with pytest.raises(ValueError, match=r"evaluation of .*unbounded.onnx at t = 0.200 s: residual: expected"):
        bad(env)


# ---------------------------------------------------------------------- reference acceleration
@SETTINGS
@given(qd0=vec, qd1=vec, t0=st.floats(1.0, 1e6), gap=st.floats(1e-3, REFERENCE_ACCELERATION_MAX_GAP))
def test_the_reference_acceleration_is_the_difference_of_two_stamped_references(qd0, qd1, t0, gap):
    acc = ReferenceAcceleration(2)
    np.testing.assert_array_equal(acc.update(qd0, t0), [0.0, 0.0])  # one reference: nothing to difference
    expected = (qd1 - qd0) / ((t0 + gap) - t0)
    np.testing.assert_allclose(acc.peek(qd1, t0 + gap), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(acc.qdd_ref, [0.0, 0.0])  # peek changes nothing
    np.testing.assert_allclose(acc.update(qd1, t0 + gap), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(acc.update(qd1 + 5.0, t0 + gap), expected, rtol=1e-9, atol=1e-9)  # same stamp: kept


@pytest.mark.parametrize("second_stamp, why", [(None, "unstamped"), (0.0, "stamp 0: unstamped"),
                                               (10.0 + REFERENCE_ACCELERATION_MAX_GAP + 0.01, "a gap"),
                                               (9.99, "the stamp went back")])
def test_the_reference_acceleration_is_zero_without_two_close_stamped_references(second_stamp, why):
    acc = ReferenceAcceleration(2)
    acc.update([0.0, 0.0], 10.0)
    assert np.all(acc.update([1.0, -1.0], second_stamp) == 0.0), why
    # and it restarts from that reference
    if second_stamp:
        np.testing.assert_allclose(acc.update([2.0, -2.0], second_stamp + 0.01), [100.0, -100.0])


def test_the_reference_hold_and_a_model_reading_the_reference_acceleration(tmp_path):
    obs = default_observation_names(JOINTS, ("payload_mass",), reference_acceleration=True)
    w = np.zeros((len(obs), 2), np.float32)
    w[obs.index("qdd_ref/shoulder"), 0] = 0.5
    w[obs.index("qdd_ref/elbow"), 1] = -0.25
    step = _step(linear_model(str(tmp_path / "qdd.onnx"), JOINTS, obs, LIMIT, weights=w))
    step.set_perception(np.array([1.0]), 10.0)
    q, qd, a_base = np.zeros(2), np.zeros(2), np.zeros(2)
    step.reference.set(np.zeros(2), np.array([0.0, 0.0]), 10.0)
    np.testing.assert_allclose(step.step(q, qd, a_base, 10.0, 10.0).residual, [0.0, 0.0])
    step.reference.set(np.zeros(2), np.array([0.02, 0.04]), 10.01)  # qdd_ref (2, 4) rad/s^2
    np.testing.assert_allclose(step.reference.qdd_ref, [2.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(step.step(q, qd, a_base, 10.01, 10.01).residual, [1.0, -1.0], rtol=1e-5)
    # the same assembly without the reference acceleration is refused, as bad input, never raised
    out = step.model.residual(q, qd, np.zeros(2), np.zeros(2), a_base, np.array([1.0]), 10.02)
    assert out.residual is None and out.skip is Skip.BAD_INPUT and "qdd_ref" in out.why


def test_a_model_that_declares_an_observation_lowpass_sees_its_observation_filtered(tmp_path):
    from residual_control.core.errors import ModelError
    from residual_control.core.observation import LOWPASS_METADATA_KEY

    w = np.zeros((len(OBS), 2), np.float32)
    w[OBS.index("e/shoulder"), 0] = 10.0
    path = linear_model(str(tmp_path / "lp.onnx"), JOINTS, OBS, LIMIT, weights=w,
                        extra_metadata={LOWPASS_METADATA_KEY: "10.0"})
    step = _step(path)
    assert step.model.lowpass is not None and step.model.lowpass.cutoff_hz == 10.0
    step.set_perception(np.array([1.0]), 10.0)
    step.reference.set(np.array([0.0, 0.0]), np.zeros(2), 10.0)
    q = np.zeros(2)
    assert step.step(q, q, q, 10.0, 10.0).residual[0] == 0.0
    step.reference.set(np.array([0.1, 0.0]), np.zeros(2), 10.01)  # the error steps to 0.1 rad
    a = 0.01 / (1.0 / (2 * np.pi * 10.0) + 0.01)
    np.testing.assert_allclose(step.step(q, q, q, 10.01, 10.01).residual[0], 10.0 * 0.1 * a, rtol=1e-5)
    np.testing.assert_allclose(step.step(q, q, q, 10.02, 10.02).residual[0], 10.0 * 0.1 * (a + (1 - a) * a),
                               rtol=1e-5)
    for bad in ("0", "-3", "fast", "nan"):
        bad_path = linear_model(str(tmp_path / "bad.onnx"), JOINTS, OBS, LIMIT, weights=w,
                                extra_metadata={LOWPASS_METADATA_KEY: bad})
        with pytest.raises(ModelError, match=r"metadata 'observation_lowpass_hz' expected a cut-off > 0 Hz, found"):
            LoadedPolicy(bad_path, "", EXPECT)
