"""The temporal smoothness term of the imitation loss (bc.smoothness_weight, default off)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from residual_control.core.errors import ConfigError  # noqa: E402
from residual_control.training.bc import collect, fit  # noqa: E402
from residual_control.training.common.config import (  # noqa: E402
    BCTrainConfig, ExpertConfig, config_sha256, load_train_config,
)
from residual_control.training.common.nets import ResidualPolicyNet  # noqa: E402

from support import ROOT  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control.yaml")
torch.set_num_threads(1)


def test_off_by_default_and_the_hash_of_a_config_without_it_is_unchanged(tmp_path):
    assert BCTrainConfig().bc.smoothness_weight == 0.0
    shipped = load_train_config(ROOT / "config" / "train_bc.yaml")
    without = tmp_path / "bc.yaml"
    without.write_text("bc: {}\n")
    assert load_train_config(without).sha256 == shipped.sha256
    raw = {"bc": {"episodes": 3}}
    assert config_sha256({"bc": {"episodes": 3, "smoothness_weight": 0.0}}) == config_sha256(raw)
    on = load_train_config(without, {"bc": {"smoothness_weight": 30.0}})
    assert on.values.bc.smoothness_weight == 30.0 and on.sha256 != shipped.sha256


def test_a_negative_weight_is_refused():
    with pytest.raises(ConfigError, match=r"smoothness_weight: expected a value >= 0.0, found -1.0"):
        load_train_config(ROOT / "config" / "train_bc.yaml", {"bc": {"smoothness_weight": -1.0}})


def test_collect_flags_the_pairs_within_an_episode():
    from residual_control.training.env import ResidualEnv

    env = ResidualEnv(PARAMS, seed=0, episode_seconds=0.05)
    flags: list = []
    obs, lab = collect(env, None, ExpertConfig(), 3, np.random.default_rng(0), 1.0, 0.0, next_valid=flags)
    assert len(flags) == 1 and flags[0].shape == (len(obs),) and len(obs) == 15
    np.testing.assert_array_equal(np.flatnonzero(~flags[0]), [4, 9, 14])  # the last state of each episode


def _data(n=600, seed=0):
    """Consecutive 'states' of a slow signal with a label that chatters from sample to sample."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 0.01
    x = np.stack([np.sin(t), np.cos(t), rng.normal(0, 1, n)], axis=1).astype(np.float32)
    y = np.clip(0.5 * x[:, :2] + 0.3 * x[:, 2:3], -0.99, 0.99).astype(np.float32)
    return x, y


def _change(net, x, valid):
    with torch.no_grad():
        u = net.unit_action(torch.as_tensor(x)).numpy()
    return float(np.mean((u[1:] - u[:-1])[valid[:-1]] ** 2))


def test_the_term_makes_the_output_change_less_between_consecutive_states():
    x, y = _data()
    valid = np.ones(len(x), bool)
    valid[-1] = False
    changes = []
    for weight in (0.0, 30.0):
        torch.manual_seed(0)
        net = ResidualPolicyNet(3, [1.0, 1.0], (16, 16))
        fit(net, x, y, 20, 0.01, 64, 0, 0.0, smoothness_weight=weight, next_valid=valid)
        changes.append(_change(net, x, valid))
    assert changes[1] < 0.3 * changes[0], changes


def test_weight_zero_is_the_plain_imitation_loss():
    x, y = _data(200)
    nets = []
    for kw in ({}, {"smoothness_weight": 0.0, "next_valid": np.ones(len(x), bool)}):
        torch.manual_seed(0)
        net = ResidualPolicyNet(3, [1.0, 1.0], (8,))
        fit(net, x, y, 3, 0.01, 32, 0, 0.0, **kw)
        nets.append(net)
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)


def test_pairs_across_episodes_are_not_penalised():
    """With every pair flagged invalid the term is zero: the fit equals the plain one."""
    x, y = _data(200)
    nets = []
    for kw in ({}, {"smoothness_weight": 100.0, "next_valid": np.zeros(len(x), bool)}):
        torch.manual_seed(0)
        net = ResidualPolicyNet(3, [1.0, 1.0], (8,))
        fit(net, x, y, 3, 0.01, 32, 0, 0.0, **kw)
        nets.append(net)
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_the_term_without_its_pairs_is_refused():
    x, y = _data(50)
    with pytest.raises(ValueError, match=r"smoothness_weight 1.0 needs next_valid, one flag per sample \(50\), "
                                         r"found None"):
        fit(ResidualPolicyNet(3, [1.0, 1.0], (8,)), x, y, 1, 0.01, 16, 0, 0.0, smoothness_weight=1.0)


def _per_joint_change(net, x, valid):
    with torch.no_grad():
        u = net.unit_action(torch.as_tensor(x)).numpy()
    return np.mean((u[1:] - u[:-1])[valid[:-1]] ** 2, axis=0)


def test_a_weight_per_joint_smooths_that_joint_and_equal_weights_are_the_one_number():
    x, y = _data()
    valid = np.ones(len(x), bool)
    valid[-1] = False
    out = {}
    for name, w in (("none", 0.0), ("second", (0.0, 60.0)), ("both", (30.0, 30.0)), ("one", 30.0)):
        torch.manual_seed(0)
        net = ResidualPolicyNet(3, [1.0, 1.0], (16, 16))
        fit(net, x, y, 20, 0.01, 64, 0, 0.0, smoothness_weight=w, next_valid=valid)
        out[name] = _per_joint_change(net, x, valid)
    # only the second joint's weight: its output changes far less, the first joint's much less so
    assert out["second"][1] < 0.3 * out["none"][1], out
    assert out["second"][0] / out["none"][0] > 2 * out["second"][1] / out["none"][1], out
    # equal weights per joint weigh the term as the one number does
    np.testing.assert_allclose(out["both"], out["one"], rtol=1e-4)


def test_per_joint_weights_are_checked_against_the_joints():
    x, y = _data(50)
    with pytest.raises(ValueError, match=r"expected 2 weights \(one per output\), found 3"):
        fit(ResidualPolicyNet(3, [1.0, 1.0], (8,)), x, y, 1, 0.01, 16, 0, 0.0, smoothness_weight=(1.0, 1.0, 1.0),
            next_valid=np.ones(len(x), bool))
    cfg = load_train_config(ROOT / "config" / "train_bc.yaml", {"bc": {"smoothness_weight": [0.0, 5]}})
    assert cfg.values.bc.smoothness_weight == (0.0, 5.0)
    with pytest.raises(ConfigError, match=r"smoothness_weight: expected one number >= 0.0 or a non-empty list"):
        load_train_config(ROOT / "config" / "train_bc.yaml", {"bc": {"smoothness_weight": [1.0, -2.0]}})
