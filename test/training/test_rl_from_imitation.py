"""Residual SAC started from the imitation residual (rl.init_from), its critic warm-up, and learn-bench's ratio."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from support import ROOT

PARAMS = str(ROOT / "config" / "residual_control.yaml")
SHIPPED = str(ROOT / "models" / "residual_bc_plain.onnx")
SMALL_RL = {"learning_starts": 60, "batch_size": 16, "critic_hidden": [16, 16], "stats_episodes": 1,
            "eval_episodes": 1, "eval_every": 100}

torch.set_num_threads(1)


def _env(net=None, seconds=0.5):
    from residual_control.training.env import ResidualEnv
    from residual_control.training.rl import FixedNormalize, normaliser_stats

    raw = ResidualEnv(PARAMS, seed=0, episode_seconds=seconds)
    if net is None:
        return raw
    mean, std, clip = normaliser_stats(net)
    return FixedNormalize(raw, mean, std, clip)


def _shipped():
    from residual_control.training.rl import load_init_residual

    return load_init_residual(SHIPPED, _env())


def _raw_observations(n, seed=0):
    """Observations of the base-alone loop, spread by noise (and some far outside, to exercise the clip)."""
    env = _env()
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for k in range(n):
        out.append(obs + rng.normal(0, 0.5 if k % 5 else 50.0, obs.shape).astype(np.float32))
        obs, _, term, trunc, _ = env.step(np.zeros(2))
        if term or trunc:
            obs, _ = env.reset(seed=seed + k)
    return np.asarray(out, np.float32)


def test_init_actor_is_the_imitation_residual():
    """The deterministic SAC action equals the shipped residual's unit action (same torque after scaling)."""
    from residual_control.training.rl import make_sac

    net = _shipped()
    env = _env(net)
    model = make_sac(env, {**SMALL_RL, "init_log_std": -3.0}, seed=0, residual=True, net_hidden=[64, 64],
                     init_net=net)
    raw = _raw_observations(200)
    sac = np.stack([model.predict(env.observation(o), deterministic=True)[0] for o in raw])
    with torch.no_grad():
        ref = net(torch.as_tensor(raw)).numpy() / net.limit.numpy()
    assert np.abs(ref).max() > 0.05          # the residual is not zero on these states
    np.testing.assert_allclose(sac, ref, atol=2e-6, rtol=0)
    # The torque the env applies for the SAC action is the residual's torque.
    np.testing.assert_allclose(env.unwrapped.action_to_torque(sac[0]), ref[0] * net.limit.numpy(), atol=1e-5)
    # Small, state-independent exploration noise.
    assert torch.all(model.actor.log_std.weight == 0) and torch.all(model.actor.log_std.bias == -3.0)


def test_init_refuses_a_network_of_another_shape():
    from residual_control.training.rl import make_sac

    net = _shipped()
    with pytest.raises(ValueError, match=r"rl.init_from: expected a ReLU network of the actor's layer shapes"):
        make_sac(_env(net), SMALL_RL, seed=0, residual=True, net_hidden=[32, 32], init_net=net)


def _actor_state(model):
    return {k: v.clone() for k, v in model.actor.state_dict().items()}


@pytest.mark.parametrize("freeze", [10_000, 0])
def test_warmup_keeps_the_initial_actor_and_acts_near_it(freeze):
    """Warm-up acts as the imitation residual plus small noise; the freeze keeps the actor fixed.

    The critic learns meanwhile; without a freeze the actor does move (so the check can fail).
    """
    from residual_control.training.rl import NetPolicy, make_sac

    net = _shipped()
    env = _env(net, seconds=0.3)
    model = make_sac(env, {**SMALL_RL, "actor_freeze_steps": freeze}, seed=1, residual=True, net_hidden=[64, 64],
                     init_net=net)
    actor0 = _actor_state(model)
    critic0 = [p.clone() for p in model.critic.parameters()]
    model.learn(160)
    assert model._n_updates > 50
    moved_critic = any(not torch.equal(a, b) for a, b in zip(critic0, model.critic.parameters()))
    assert moved_critic
    same_actor = all(torch.equal(v, model.actor.state_dict()[k]) for k, v in actor0.items())
    assert same_actor == (freeze > 0)
    # The warm-up transitions (before learning_starts) are the initial policy's actions plus its small noise.
    buf = model.replay_buffer
    obs = buf.observations[:SMALL_RL["learning_starts"], 0]
    acts = buf.actions[:SMALL_RL["learning_starts"], 0]
    policy = NetPolicy(net)
    ref = np.stack([policy.predict(o)[0] for o in obs])
    dev = np.abs(acts - ref)
    assert dev.mean() < 0.2, dev.mean()       # std exp(-2) = 0.14 -> mean |dev| ~ 0.11; uniform: ~0.6


def test_train_rl_from_init_starts_at_the_imitation_rmse(tmp_path):
    """The curve's step 0 of an init_from run is the imitation residual on the same evaluation episodes."""
    from residual_control.training.benchmark import evaluate_init
    from residual_control.training.common.config import load_train_config
    from residual_control.training.rl import train_rl

    over = {"params_file": PARAMS, "env": {"episode_seconds": 0.5},
            "rl": {**SMALL_RL, "init_from": SHIPPED, "actor_freeze_steps": 10_000}}
    cfg = load_train_config(ROOT / "config" / "train_rl.yaml", over)
    s = train_rl(cfg, str(tmp_path / "rl"), seed=0, total_steps=100, progress=False)
    imitation = evaluate_init(cfg, SHIPPED, seed=0)
    assert s["init_from"] == SHIPPED
    assert s["curve"][0]["rmse"] == pytest.approx(imitation["rmse"], rel=1e-6)
    # Frozen actor: still the imitation residual after 100 steps.
    assert s["curve"][-1]["rmse"] == pytest.approx(imitation["rmse"], rel=1e-6)
    base = train_rl(load_train_config(ROOT / "config" / "train_rl.yaml",
                                      {**over, "rl": {**SMALL_RL, "actor_freeze_steps": 10_000}}),
                    str(tmp_path / "zero"), seed=0, total_steps=0, progress=False)
    assert imitation["rmse"] < base["curve"][0]["rmse"]   # the residual helps on these episodes
    assert len(imitation["rms_step"]) == 2 and imitation["rms_step_max"] == max(imitation["rms_step"])


def _curve(pairs):
    return [{"step": s, "rmse": r} for s, r in pairs]


def test_rmse_steps_ratio_on_hand_made_curves():
    from residual_control.training.benchmark import rmse_steps_ratio, steps_to_reach

    res = _curve([(0, 0.05), (1000, 0.04), (2000, 0.03)])
    scr = _curve([(0, 0.5), (1000, 0.2), (2000, 0.06), (3000, 0.045), (4000, 0.03)])
    assert steps_to_reach(res, 0.04) == 1000 and steps_to_reach(scr, 0.045) == 3000
    assert steps_to_reach(scr, 0.01) is None
    r = rmse_steps_ratio(res, scr, 0.045)
    assert (r["residual_steps"], r["scratch_steps"], r["ratio"], r["reason"]) == (1000, 3000, 1000 / 3000, None)
    # Met at step 0 by the residual (the imitation residual already there): ratio 0.
    assert rmse_steps_ratio(res, scr, 0.06)["ratio"] == 0.0
    # Scratch never reaches it: null, saying so.
    r = rmse_steps_ratio(res, scr[:3], 0.045)
    assert r["ratio"] is None and "from-scratch SAC did not reach" in r["reason"] and r["residual_steps"] == 1000
    assert r["ratio_below"] == 1000 / 2000    # the residual's steps / the budget scratch missed it in
    assert rmse_steps_ratio(res, scr, 0.045)["ratio_below"] is None
    # met at step 0 while scratch never meets it: 0, not a bound
    r = rmse_steps_ratio(res, scr[:3], 0.055)
    assert r["ratio"] == 0.0 and r["ratio_below"] is None and r["reason"] is None and r["scratch_steps"] is None
    r = rmse_steps_ratio(res, scr, 0.02)
    assert r["ratio"] is None and r["reason"].startswith("neither") and r["ratio_below"] is None
    r = rmse_steps_ratio(_curve([(0, 0.5), (4000, 0.1)]), scr, 0.03)
    assert r["ratio"] is None and "residual run did not reach" in r["reason"]


def test_learn_bench_parses_init_and_variants():
    import argparse

    from residual_control.training.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args(["learn-bench", "--skip-bc", "--init", "m.onnx", "--variant", "a.yaml", "--variant",
                           "b.yaml", "--target-factor", "1.2", "--no-baselines"])
    assert (a.init, a.variant, a.target_factor, a.no_baselines) == ("m.onnx", ["a.yaml", "b.yaml"], 1.2, True)


def test_anchor_pulls_towards_the_imitation_residual_only_when_away_from_it():
    """The anchor's gradient is zero at the imitation residual and, after a step, moves a perturbed actor back."""
    from residual_control.training.rl import NetPolicy, make_sac

    net = _shipped()
    env = _env(net, seconds=0.3)
    model = make_sac(env, {**SMALL_RL, "actor_freeze_steps": 10_000, "anchor_weight": 0.4}, seed=2, residual=True,
                     net_hidden=[64, 64], init_net=net)
    model.learn(100)
    assert model.anchor_weight == 0.4
    model.actor.optimizer.zero_grad()
    model._anchor_backward(64)
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.actor.parameters())
    with torch.no_grad():
        model.actor.mu.bias.add_(0.3)
    obs = model.replay_buffer.observations[:100, 0]
    ref = np.stack([NetPolicy(net).predict(o)[0] for o in obs])

    def dist():
        return float(np.mean([np.abs(model.predict(o, deterministic=True)[0] - r).sum() for o, r in zip(obs, ref)]))

    before = dist()
    opt = torch.optim.SGD(model.actor.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        model._anchor_backward(64)
        opt.step()
    assert torch.count_nonzero(model.actor.mu.bias.grad) > 0
    assert dist() < 0.8 * before


def test_command_rate_penalty_is_the_scaled_command_change():
    from residual_control.training.env import ResidualEnv
    from residual_control.training.rl import CommandRatePenalty

    plain = ResidualEnv(PARAMS, seed=0, episode_seconds=0.2)
    wrapped = CommandRatePenalty(ResidualEnv(PARAMS, seed=0, episode_seconds=0.2), 2.0)
    plain.reset(seed=4)
    wrapped.reset(seed=4)
    rng = np.random.default_rng(0)
    last = None
    for k in range(15):
        a = rng.uniform(-1, 1, 2)
        _, r0, _, _, i0 = plain.step(a)
        _, r1, _, _, i1 = wrapped.step(a)
        np.testing.assert_array_equal(i0["command"], i1["command"])
        want = 0.0 if last is None else 2.0 * float(np.sum(((i0["command"] - last) / plain.residual_limit) ** 2))
        assert r0 - r1 == pytest.approx(want, rel=1e-9, abs=1e-12)
        last = i0["command"]
    assert want > 0


def test_rl_benchmark_reports_every_run_and_the_ratio(tmp_path, monkeypatch):
    import json

    import yaml

    from residual_control.training.benchmark import rl_benchmark

    cfg = tmp_path / "rl.yaml"
    cfg.write_text(yaml.safe_dump({"params_file": PARAMS, "network": {"hidden": [64, 64]},
                                   "env": {"episode_seconds": 0.3}, "rl": SMALL_RL}))
    variant = tmp_path / "train_rl_tiny_rate.yaml"
    variant.write_text(yaml.safe_dump({"params_file": PARAMS, "env": {"episode_seconds": 0.3},
                                       "rl": {**SMALL_RL, "rate_weight": 1.0}}))
    report = rl_benchmark(str(cfg), str(tmp_path / "bench"), seed=0, total_steps=100, progress=False,
                          init=SHIPPED, variants=[str(variant)])
    assert list(report["runs"]) == ["from_scratch", "zero_init", "imitation_init", "tiny_rate"]
    assert report["runs"]["tiny_rate"]["init_from"] == SHIPPED
    assert report["target_rmse"] == pytest.approx(1.5 * report["imitation"]["rmse"])
    init_run = report["runs"]["imitation_init"]
    assert init_run["curve"][0]["rmse"] == pytest.approx(report["imitation"]["rmse"], rel=1e-6)
    assert init_run["steps_to_imitation_rmse"] == 0 and report["runs"]["zero_init"]["steps_to_imitation_rmse"] is None
    assert set(report["ratio"]) == {"zero_init", "imitation_init", "tiny_rate"}
    for r in report["ratio"].values():
        assert (r["ratio"] is None) == (r["reason"] is not None)
    saved = json.loads((tmp_path / "bench" / "rl_benchmark.json").read_text())
    assert saved["runs"].keys() == report["runs"].keys()
    assert (tmp_path / "bench" / "rl_curves.png").stat().st_size > 1000
    # --resume: the finished runs are reused (no training), the report is the same.
    import residual_control.training.rl as rl_module

    def no_training(*a, **k):
        raise AssertionError("resume retrained a finished run")

    monkeypatch.setattr(rl_module, "train_rl", no_training)
    again = rl_benchmark(str(cfg), str(tmp_path / "bench"), seed=0, total_steps=100, progress=False,
                         init=SHIPPED, variants=[str(variant)], resume=True)
    assert json.dumps(again["runs"], sort_keys=True) == json.dumps(report["runs"], sort_keys=True)
    # A different budget is not reused.
    with pytest.raises(AssertionError, match="retrained"):
        rl_benchmark(str(cfg), str(tmp_path / "bench"), seed=0, total_steps=99, progress=False, resume=True)
