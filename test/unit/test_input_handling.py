"""Property-based tests of every node's input handling.

The nodes are thin adapters: what they do with a message's contents is done
by pure functions (nodes/conversions.py: order_by_name, read_state,
read_reference, read_perception; core/step.py: LoadedPolicy.residual;
core: Mixer, ObservationAssembler). Hypothesis feeds them arbitrary JointState-like
contents -- name lists with duplicates, unknown, missing or no names, value
lists of any length with NaN, Inf and 1e308, any stamps -- and checks:

* only the documented exception type is ever raised (ValueError /
  ObservationError; the mixer and the policy step never raise at all),
  with a message naming what was expected and what was found;
* nothing non-finite or out of bounds ever comes out (commands within the
  limits and within g * eps of the base action; residuals within the
  model's bound).

A node started with a bad params file (exit status 2, the message naming the
parameter, what was expected and what was found): test/ros/test_params_file_refusal.py.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residual_control.core.errors import ObservationError
from residual_control.core.mixer import Mixer, MixerConfig, residual_bound_ok
from residual_control.core.observation import ObservationAssembler, default_observation_names
from residual_control.core.policy import PolicyExpectations
from residual_control.nodes.conversions import order_by_name, read_perception, read_reference, read_state
from residual_control.core.step import LoadedPolicy
from residual_control.harness.synthetic_models import linear_model

from support.messages import says_expected_found

JOINTS = ("shoulder", "elbow")
LIMIT = (12.0, 6.0)
FEATURES = ("payload_mass",)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names_st = st.lists(st.sampled_from(["shoulder", "elbow", "wrist", "", "Shoulder", "elbow "]), max_size=5)
value_st = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, 5e-324]),
    st.floats(-100, 100),
)
values_st = st.lists(value_st, max_size=5)
good_values_st = st.lists(st.floats(-100, 100), min_size=2, max_size=2)
stamp_st = st.one_of(st.floats(-1e3, 1e3), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e12]))




# ---------------------------------------------------------------------- nodes/conversions.py readers
@SETTINGS
@given(names=names_st, values=values_st)
def test_order_by_name_returns_finite_joint_values_or_a_clear_error(names, values):
    try:
        out = order_by_name(JOINTS, names, values, "field")
    except ValueError as exc:
        assert says_expected_found(str(exc)), str(exc)
        assert str(exc).startswith("field:")
        return
    assert out.shape == (len(JOINTS),)
    assert np.all(np.isfinite(out))
    # Matched by name, never by position.
    for j, v in zip(JOINTS, out):
        assert v == values[names.index(j)]
    assert len(set(names)) == len(names)


@SETTINGS
@given(names=names_st, pos=values_st, vel=values_st, stamp=stamp_st)
def test_read_state_and_reference_accept_only_complete_finite_messages(names, pos, vel, stamp):
    msg = SimpleNamespace(name=names, position=pos, velocity=vel, header=SimpleNamespace(stamp=stamp))
    for reader in (read_state, read_reference):
        try:
            a, b = reader(JOINTS, msg)
        except ValueError as exc:
            assert says_expected_found(str(exc)), str(exc)
            continue
        assert a.shape == b.shape == (len(JOINTS),)
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))


@SETTINGS
@given(data=values_st)
def test_read_perception(data):
    try:
        out = read_perception(FEATURES, SimpleNamespace(data=data))
    except ValueError as exc:
        assert says_expected_found(str(exc)), str(exc)
        return
    assert out.shape == (len(FEATURES),) and np.all(np.isfinite(out))


# ---------------------------------------------------------------------- the mixer
def _config(**kw) -> MixerConfig:
    base = dict(joints=JOINTS, residual_limit=LIMIT, residual_limit_max=(25.0, 12.0),
                command_min=(-60.0, -30.0), command_max=(60.0, 30.0), residual_gain=0.8,
                recovery_hold_time=0.02, recovery_ramp_time=0.05)
    base.update(kw)
    return MixerConfig(**base)


message_st = st.tuples(st.sampled_from(["residual", "base", "watchdog"]), names_st, values_st, stamp_st,
                       st.floats(0.0, 0.2))
good_message_st = st.tuples(st.sampled_from(["residual", "base"]), st.just(list(JOINTS)), good_values_st,
                            st.just(None), st.floats(0.0, 0.03))


@SETTINGS
@given(messages=st.lists(st.one_of(message_st, good_message_st), min_size=1, max_size=40),
       behaviour=st.sampled_from(["stop", "zero", "hold"]), jump_back=st.booleans())
def test_mixer_never_raises_and_every_command_is_safe(messages, behaviour, jump_back):
    cfg = _config(base_stale_behavior=behaviour)
    mixer = Mixer(cfg)
    now = 100.0
    last_output = None  # the last command, whatever the mode
    origin = None       # what a resume from a base fault blends from
    for i, (kind, names, values, stamp, dt) in enumerate(messages):
        now += dt
        if jump_back and i == len(messages) // 2:
            now -= 50.0  # the clock jumps backwards (sim reset)
            origin = last_output if origin is not None else None
        stamp = now if stamp is None else stamp
        if kind == "residual":
            err = mixer.update_residual(names, values, stamp, now)
            assert err == "" or says_expected_found(err) or "stamp" in err, err
            continue
        if kind == "watchdog":
            out = mixer.check_base(now)
            if out is None:
                continue
        else:
            before = mixer.mode.value
            out = mixer.step(names, values, stamp, now)
            if before == "base_fault" and out.mode.value != "base_fault":
                origin = last_output
        assert out.mode.value in ("nominal", "recovering", "fallback", "base_fault")
        if out.command is None:
            assert behaviour == "stop" and out.mode.value == "base_fault"
            continue
        c = out.command
        assert c.shape == (len(JOINTS),)
        assert np.all(np.isfinite(c))
        assert np.all(c >= cfg.command_min) and np.all(c <= cfg.command_max)
        assert np.all(np.abs(out.applied_residual) <= cfg.residual_gain * cfg.residual_limit + 1e-12)
        last_output = c
        if out.base is not None and out.resume_weight > 0.0:
            # Leaving a base fault: exactly the blend from the last stale command to the mix.
            w = out.resume_weight
            assert behaviour != "stop" and w <= 1.0 and origin is not None
            mixed = np.clip(out.base + out.applied_residual, cfg.command_min, cfg.command_max)
            np.testing.assert_allclose(c, np.clip(w * origin + (1 - w) * mixed, cfg.command_min, cfg.command_max),
                                       rtol=1e-9, atol=1e-9)
        elif out.base is not None:
            assert residual_bound_ok(c, out.base, cfg)


@SETTINGS
@given(limit=st.lists(value_st, max_size=3), gain=value_st, timeout=value_st,
       behaviour=st.sampled_from(["stop", "zero", "hold", "explode", ""]))
def test_mixer_config_refuses_bad_values_with_a_clear_error(limit, gain, timeout, behaviour):
    from residual_control.core.errors import ConfigError

    try:
        cfg = _config(residual_limit=limit, residual_gain=gain, residual_timeout=timeout,
                      base_stale_behavior=behaviour)
    except ConfigError as exc:
        assert says_expected_found(str(exc)), str(exc)
        return
    assert len(cfg.residual_limit) == 2 and np.all(np.isfinite(cfg.residual_limit))
    assert np.all(cfg.residual_limit >= 0) and np.all(cfg.residual_limit <= cfg.residual_limit_max)
    assert 0.0 <= cfg.residual_gain <= 1.0 and math.isfinite(cfg.residual_timeout) and cfg.residual_timeout > 0


# ---------------------------------------------------------------------- observation and policy step
OBS_NAMES = default_observation_names(JOINTS, FEATURES)
vec_st = st.lists(value_st, min_size=0, max_size=4)


@SETTINGS
@given(q=vec_st, qd=vec_st, q_ref=vec_st, qd_ref=vec_st, a_base=vec_st,
       perception=st.one_of(st.none(), st.lists(value_st, max_size=3)))
def test_observation_assembler_returns_finite_float32_or_a_clear_error(q, qd, q_ref, qd_ref, a_base, perception):
    asm = ObservationAssembler(OBS_NAMES, JOINTS, FEATURES)
    with np.errstate(all="ignore"):
        try:
            obs = asm.assemble(q, qd, q_ref, qd_ref, a_base, perception)
        except ObservationError as exc:
            assert says_expected_found(str(exc)), str(exc)
            return
    assert obs.dtype == np.float32 and obs.shape == (asm.size,) and np.all(np.isfinite(obs))


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    expect = PolicyExpectations(joints=JOINTS, residual_limit=LIMIT, control_rate_hz=100.0,
                                perception_features=FEATURES)
    w = np.zeros((len(OBS_NAMES), 2), np.float32)
    w[OBS_NAMES.index("a_base/shoulder"), 0] = 1e3  # large gains: the graph's clip must bound it
    w[OBS_NAMES.index("e/elbow"), 1] = -1e3
    bounded = linear_model(str(tmp / "bounded.onnx"), ["elbow", "shoulder"][::-1], OBS_NAMES, LIMIT, weights=w)
    unbounded = linear_model(str(tmp / "unbounded.onnx"), JOINTS, OBS_NAMES, LIMIT, weights=w, bounded=False)
    return LoadedPolicy(bounded, "", expect), LoadedPolicy(unbounded, "", expect)


@SETTINGS
@given(q=vec_st, qd=vec_st, q_ref=vec_st, qd_ref=vec_st, a_base=vec_st,
       perception=st.one_of(st.none(), st.lists(value_st, max_size=3)))
def test_policy_step_never_raises_and_never_passes_an_unbounded_residual(policies, q, qd, q_ref, qd_ref, a_base,
                                                                         perception):
    for policy in policies:
        with np.errstate(all="ignore"):
            out = policy.residual(q, qd, q_ref, qd_ref, a_base, perception)
        residual, why = out.residual, out.why
        if residual is None:
            assert out.skip is not None and why
            assert says_expected_found(why) or why.startswith("inference failed"), why
            continue
        assert out.skip is None and not why and not out.model_error
        assert residual.shape == (2,) and np.all(np.isfinite(residual))
        bound = np.asarray(policy.runner.contract.residual_limit)
        assert np.all(np.abs(residual) <= bound * (1 + 1e-5) + 1e-6)
