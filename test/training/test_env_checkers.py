"""The training env passes gymnasium's and Stable-Baselines3's own env checkers, and is reproducible.

gymnasium's ``check_env`` runs ``check_reset_seed_determinism`` and ``check_step_determinism``:
two resets with the same seed give the same observation, and the same action after them the
same step (observation, reward, info), with the env's generator in the same state. Before the
plant's sensor-noise generator was re-derived from the env's seed in ``reset``, the second
failed (two envs reset with seed 7 differed by 0.43 in the observation).
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")
pytest.importorskip("mujoco")

from support import ROOT  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control.yaml")
# Noise on the sensors and the perception, so that determinism covers every generator.
NOISY = {"sensor_noise_std": (0.001, 0.002)}


def _env(**kw):
    from residual_control.training.env import ResidualEnv

    return ResidualEnv(PARAMS, episode_seconds=0.2, randomization=NOISY, **kw)


def test_gymnasium_check_env_passes():
    from gymnasium.utils.env_checker import check_env

    check_env(_env(), skip_render_check=True)


def test_sb3_check_env_passes():
    from stable_baselines3.common.env_checker import check_env

    check_env(_env(), warn=True)


def test_two_envs_with_one_seed_give_the_same_episode_and_another_seed_another():
    def rollout(env, seed):
        obs, info = env.reset(seed=seed)
        out = [obs]
        for k in range(15):
            obs, reward, _term, _trunc, _ = env.step(np.full(env.n, 0.3 * np.sin(k)))
            out.append(np.append(obs, reward))
        return np.concatenate(out), info["plant"]

    a, plant_a = rollout(_env(), 7)
    b, plant_b = rollout(_env(), 7)
    c, _ = rollout(_env(), 8)
    assert plant_a == plant_b
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_an_env_built_with_a_seed_reproduces_without_one_at_reset():
    def first(env):
        return env.reset()[0]

    np.testing.assert_array_equal(first(_env(seed=5)), first(_env(seed=5)))
