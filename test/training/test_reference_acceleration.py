"""Training with the reference acceleration in the observation; the expert's rigid-body terms along the reference."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from residual_control.core.errors import ConfigError  # noqa: E402
from residual_control.training.bc import expert_residual, true_model  # noqa: E402
from residual_control.training.common.config import (  # noqa: E402
    BCTrainConfig, ExpertConfig, load_train_config,
)
from residual_control.training.env import ResidualEnv  # noqa: E402

from support import ROOT  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control.yaml")


def test_off_by_default_and_the_hashes_of_configs_without_them_are_unchanged(tmp_path):
    assert BCTrainConfig().env.reference_acceleration is False
    assert BCTrainConfig().bc.expert.rigid_body_at == "measured"
    shipped = load_train_config(ROOT / "config" / "train_bc.yaml")
    same = load_train_config(ROOT / "config" / "train_bc.yaml", {"env": {"reference_acceleration": False},
                                                                 "bc": {"expert": {"rigid_body_at": "measured"}}})
    assert same.sha256 == shipped.sha256
    on = load_train_config(ROOT / "config" / "train_bc.yaml", {"env": {"reference_acceleration": True}})
    assert on.sha256 != shipped.sha256
    with pytest.raises(ConfigError, match=r"rigid_body_at: expected 'measured' or 'reference', found 'model'"):
        load_train_config(ROOT / "config" / "train_bc.yaml", {"bc": {"expert": {"rigid_body_at": "model"}}})


def test_the_env_observes_the_difference_of_the_references_velocities():
    env = ResidualEnv(PARAMS, seed=3, episode_seconds=0.5, reference_acceleration=True)
    names = env.observation_names
    cols = [names.index(f"qdd_ref/{j}") for j in env.joints]
    assert env.observation_space.shape == (len(names),) and len(cols) == env.n
    obs, _ = env.reset(seed=3)
    seen, qd_prev = [obs[cols]], env.qd_ref.copy()
    steps = 0
    for _ in range(30):
        obs, *_ = env.step(np.zeros(env.n))
        seen.append(obs[cols])
        expected = (env.qd_ref - qd_prev) / env.dt if steps >= 1 else np.zeros(env.n)
        np.testing.assert_allclose(obs[cols], expected, rtol=1e-4, atol=1e-4)
        qd_prev, steps = env.qd_ref.copy(), steps + 1
    assert np.max(np.abs(seen)) > 0.1  # the reference does accelerate
    # without the option the layout is the default one
    assert not any(n.startswith("qdd_ref/") for n in ResidualEnv(PARAMS, seed=3).observation_names)


def _expert_pair(rigid_body_at: str, qd_noise: np.ndarray):
    env = ResidualEnv(PARAMS, seed=5, episode_seconds=0.5)
    env.reset(seed=5)
    for _ in range(10):
        env.step(np.zeros(env.n))
    cfg = ExpertConfig(extra_kp=(50.0, 50.0), extra_kd=(0.0, 0.0), rigid_body_at=rigid_body_at)
    clean = expert_residual(env, cfg)
    env.qd_meas = env.qd_meas + qd_noise
    return env, clean, expert_residual(env, cfg)


def test_the_reference_experts_rigid_body_terms_follow_the_reference():
    env, _, _ = _expert_pair("reference", np.zeros(2))
    model, p, lead = true_model(env), env.plant_params, env.delay * env.dt
    qr, qdr, qddr = env.trajectory.sample(env.time + lead)
    qp = env.q_meas + env.qd_meas * lead
    fb = 50.0 * (qr - qp)
    friction = env.plant.nominal_frictionloss * p.friction_scale * np.tanh(qdr / ExpertConfig().friction_v0)
    tau = (model.inverse_dynamics(qr, qdr, qddr) + model.mass_matrix(qr) @ fb + friction) / p.actuator_gain
    expected = np.clip(tau - env.base.model.gravity_torque(env.q_meas), -env.residual_limit, env.residual_limit)
    np.testing.assert_allclose(expert_residual(env, ExpertConfig(extra_kp=(50.0, 50.0), extra_kd=(0.0, 0.0),
                                                                 rigid_body_at="reference")), expected, rtol=1e-9)


def test_velocity_noise_reaches_the_reference_expert_only_through_its_feedback():
    """With extra_kd 0 the reference expert reads the measured velocity only to carry q one period ahead."""
    noise = np.array([0.5, -0.5])
    env, clean_r, noisy_r = _expert_pair("reference", noise)
    _, clean_m, noisy_m = _expert_pair("measured", noise)
    lead = env.delay * env.dt
    model = true_model(env)
    qr = env.trajectory.sample(env.time + lead)[0]
    through_feedback = model.mass_matrix(qr) @ (50.0 * (-noise * lead)) / env.plant_params.actuator_gain
    np.testing.assert_allclose(noisy_r - clean_r, through_feedback, rtol=1e-6, atol=1e-9)
    # the measured-state expert passes the noise through its velocity terms as well
    assert np.max(np.abs((noisy_m - clean_m) - through_feedback)) > 1e-3


def test_the_env_filters_its_observation_as_the_runtime_does():
    from residual_control.core.observation import ObservationLowpass

    raw = ResidualEnv(PARAMS, seed=4, episode_seconds=0.3)
    filt = ResidualEnv(PARAMS, seed=4, episode_seconds=0.3, observation_lowpass_hz=10.0)
    f = ObservationLowpass(10.0)
    for episode in range(2):  # each reset restarts the filter
        o_raw, _ = raw.reset(seed=episode)
        o_filt, _ = filt.reset(seed=episode)
        np.testing.assert_allclose(o_filt, f.update(o_raw, -1.0 - episode), rtol=1e-6)  # the first: as it is
        f.reset()
        f.update(o_raw, 0.0)
        for _ in range(20):
            a = np.full(raw.n, 0.1)
            o_raw, *_ = raw.step(a)
            o_filt, *_ = filt.step(a)
            np.testing.assert_allclose(o_filt, f.update(o_raw, raw.time), rtol=1e-5, atol=1e-5)
        assert np.max(np.abs(o_filt - o_raw)) > 1e-3  # it does filter
