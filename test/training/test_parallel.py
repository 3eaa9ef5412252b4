"""Parallel rollouts (training/common/parallel.py): the same data and model for the same seed.

Inline, on local worker processes (2 and 3) and as Ray tasks on a local Ray instance started here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from residual_control.training.common.parallel import Rollouts, episode_rng, net_from_state, net_state, split

from support import ROOT

PARAMS = str(ROOT / "config" / "residual_control.yaml")
SMALL = {"params_file": PARAMS, "network": {"hidden": [8, 8]}, "env": {"episode_seconds": 0.5},
         "bc": {"epochs": 2, "dagger_rounds": 2}, "envelope": {"base_alone_episodes": 2}}

torch.set_num_threads(1)


def _cfg(overrides=None):
    from residual_control.training.common.config import load_train_config

    return load_train_config(ROOT / "config" / "train_bc.yaml", {**SMALL, **(overrides or {})})


def _student(cfg, seed=5):
    from residual_control.training.common.nets import ResidualPolicyNet
    from residual_control.training.env import make_env_from_config

    env = make_env_from_config(cfg.values.env, PARAMS, seed=0)
    torch.manual_seed(seed)
    net = ResidualPolicyNet(env.assembler.size, env.residual_limit, [8, 8])
    net.normalizer.fit(np.random.default_rng(seed).normal(size=(50, env.assembler.size)))
    return net


def _collect(rollouts, cfg, student, episodes=5, round_index=1, plant=None):
    from residual_control.training.bc import collect_parallel

    follows: list = []
    c = cfg.values
    obs, labels = collect_parallel(rollouts, c.env, PARAMS, student, c.bc.expert, episodes, seed=11,
                                   round_index=round_index, beta=0.5, noise_std=0.1, plant=plant, next_valid=follows)
    return obs, labels, follows[0]


@pytest.fixture(scope="module")
def ray_rollouts():
    rollouts = Rollouts(2, ray_address="local")
    yield rollouts
    rollouts.close()


@given(st.integers(0, 300), st.integers(1, 12))
def test_split_covers_the_range_in_contiguous_near_equal_parts(n, parts):
    chunks = split(n, parts)
    assert [i for c in chunks for i in c] == list(range(n))
    sizes = [len(c) for c in chunks]
    assert len(chunks) == (max(1, min(parts, n)) if n else 1)
    if n:
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_episode_generators_differ_by_index_and_repeat_by_seed():
    a = episode_rng(3, 0, 1).integers(2**31, size=4)
    assert np.array_equal(a, episode_rng(3, 0, 1).integers(2**31, size=4))
    assert not np.array_equal(a, episode_rng(3, 0, 2).integers(2**31, size=4))
    assert not np.array_equal(a, episode_rng(3, 1, 1).integers(2**31, size=4))
    assert not np.array_equal(a, episode_rng(4, 0, 1).integers(2**31, size=4))


@pytest.mark.parametrize("workers, address, found", [
    (0, None, "found 0"), (-2, None, "found -2"), (1.5, None, "found 1.5"), (True, None, "found True"),
    (2, "", "found ''"), (2, 7, "found 7")])
def test_bad_rollout_settings_are_refused_naming_what_was_found(workers, address, found):
    with pytest.raises(ValueError) as err:
        Rollouts(workers, address)
    assert "expected" in str(err.value) and found in str(err.value)


def test_cli_refuses_workers_below_one():
    from residual_control.cli import main

    with pytest.raises(SystemExit) as err:
        main(["evaluate", "models/residual_bc.onnx", "--workers", "0"])
    assert err.value.code == 2


def test_a_network_crosses_to_a_worker_unchanged():
    cfg = _cfg()
    net = _student(cfg)
    net.normalizer.clip = 7.5
    copy = net_from_state(net_state(net))
    x = torch.as_tensor(np.random.default_rng(0).normal(0, 30, (64, net.n_obs)).astype(np.float32))
    assert copy.normalizer.clip == 7.5
    assert torch.equal(copy(x), net(x))
    assert net_state(None) is None and net_from_state(None) is None


def test_the_same_dagger_data_inline_and_on_two_and_three_processes():
    cfg = _cfg()
    student = _student(cfg)
    inline = _collect(Rollouts(1), cfg, student)
    assert len(inline[0]) == len(inline[1]) == len(inline[2]) > 0
    # Both kinds of episode ran: the student's (labels differ from the actions) and the expert's.
    for workers in (2, 3):
        with Rollouts(workers) as pool:
            assert pool.kind == "process"
            got = _collect(pool, cfg, student)
        for a, b in zip(inline, got):
            assert np.array_equal(a, b), f"{workers} workers"
    # A different round draws other episodes: the data is not a constant.
    other = _collect(Rollouts(1), cfg, student, round_index=2)
    assert not np.array_equal(other[0][:10], inline[0][:10])


def test_episodes_do_not_depend_on_which_chunk_ran_them():
    """Episode k is the same whether its worker ran it first or after others (the env's state is reset)."""
    from residual_control.training.bc import _collect_chunk

    cfg = _cfg()
    c = cfg.values
    task = {"env": c.env, "params_file": PARAMS, "student": net_state(_student(cfg)), "expert": c.bc.expert,
            "seed": 2, "round": 0, "beta": 0.5, "noise_std": 0.1, "plant": None}
    whole = _collect_chunk({**task, "episodes": [0, 1, 2]})
    last = _collect_chunk({**task, "episodes": [2]})
    n = len(last[0])
    assert np.array_equal(np.asarray(whole[0][-n:]), np.asarray(last[0]))
    assert np.array_equal(np.asarray(whole[1][-n:]), np.asarray(last[1]))


def test_ray_tasks_give_the_same_dagger_data_and_evaluation(ray_rollouts):
    from residual_control.training.evaluate import compare_plants, load_reference_spec

    cfg = _cfg()
    student = _student(cfg)
    inline = _collect(Rollouts(1), cfg, student)
    got = _collect(ray_rollouts, cfg, student)
    assert ray_rollouts.kind == "ray"
    for a, b in zip(inline, got):
        assert np.array_equal(a, b)
    plants = {"real": "config/plants/real.yaml", "mid": "config/plants/mid.yaml"}
    traj = load_reference_spec()
    args = ({"student": net_state(student)}, plants, traj, 1.0, PARAMS, 1)
    here = compare_plants(*args)
    there = compare_plants(*args, rollouts=ray_rollouts)
    assert list(there) == ["real", "mid"]
    for name in plants:
        assert there[name]["residual"]["rmse"] == here[name]["residual"]["rmse"]
        assert there[name]["base"]["rmse"] == here[name]["base"]["rmse"]
        assert there[name]["roughness_ratio"] == here[name]["roughness_ratio"]
    assert here["real"]["base"]["rmse"] != here["mid"]["base"]["rmse"]


def _weights(path):
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    return ckpt["state_dict"], ckpt["meta"]


def test_train_bc_makes_the_same_model_on_local_workers_and_on_ray(tmp_path, ray_rollouts):
    from residual_control.training.bc import train_bc

    cfg = _cfg()
    local = train_bc(cfg, str(tmp_path / "local"), seed=3, episodes=4, progress=False, evaluate=False, workers=2)
    assert local["rollouts"] == {"kind": "process", "workers": 2, "ray_address": None}
    ray = train_bc(cfg, str(tmp_path / "ray"), seed=3, episodes=4, progress=False, evaluate=False, workers=2,
                   ray_address="local")
    assert ray["samples"] == local["samples"] and ray["final_loss"] == local["final_loss"]
    wl, ml = _weights(tmp_path / "local" / "checkpoint.pt")
    wr, mr = _weights(tmp_path / "ray" / "checkpoint.pt")
    assert ml["episode_seeding"] == mr["episode_seeding"] == "per_episode"
    for key in wl:
        assert torch.equal(wl[key], wr[key]), key
    # The in-process stream (the shipped models') is another one, and says nothing in the metadata.
    inline = train_bc(cfg, str(tmp_path / "inline"), seed=3, episodes=4, progress=False, evaluate=False)
    wi, mi = _weights(tmp_path / "inline" / "checkpoint.pt")
    assert "episode_seeding" not in mi and "rollouts" not in inline
    assert not all(torch.equal(wl[k], wi[k]) for k in wl)


def test_rollout_bench_times_every_setting_against_the_inline_floor(tmp_path):
    import json

    from residual_control.training.rollout_bench import format_table, rollout_bench

    report = rollout_bench(episodes=2, workers=2, ray=False, seconds=0.3, progress=False,
                           json_path=str(tmp_path / "rb.json"), repeat=2)
    rows = {(r["setting"], r["job"]): r for r in report["rows"]}
    assert set(rows) == {(s, j) for s in ("inline", "process x2") for j in ("dagger", "evaluate")}
    for (setting, job), r in rows.items():
        floor = rows[("inline", job)]["warm_s"]
        assert r["same_as_inline"] is True and r["cold_s"] > 0 and r["warm_s"] > 0
        assert r["speedup_warm"] == round(floor / r["warm_s"], 3)
        assert r["speedup_cold"] == round(floor / r["cold_s"], 3)
        assert len(r["warm_runs_s"]) == 2 and abs(r["warm_s"] - float(np.median(r["warm_runs_s"]))) <= 1e-3
    assert rows[("inline", "dagger")]["speedup_warm"] == 1.0
    assert json.loads((tmp_path / "rb.json").read_text())["rows"] == report["rows"]
    assert format_table(report).count("\n") == 1 + len(report["rows"])


def _step_vec_env(vec, steps=45, seed=4):
    vec.seed(seed)
    out = [vec.reset()]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs, rew, done, infos = vec.step(rng.uniform(-1, 1, (vec.num_envs, vec.action_space.shape[0])))
        out += [obs, rew, done.astype(float)]
        out += [info["terminal_observation"] for info in infos if "terminal_observation" in info]
    vec.close()
    return out


def test_rl_envs_step_the_same_in_this_process_on_processes_and_on_ray_actors(ray_rollouts):
    from functools import partial

    from residual_control.training.common.parallel import make_vec_env
    from residual_control.training.env import make_env_from_config

    env_cfg = _cfg({"env": {"episode_seconds": 0.2}}).values.env
    fns = [partial(make_env_from_config, env_cfg, PARAMS, seed=0) for _ in range(2)]
    inline = _step_vec_env(make_vec_env(fns, Rollouts(1)))
    assert sum(len(x) for x in inline if x.ndim == 1 and x.shape == (2,)) > 0
    # 45 steps of 20-step episodes: the envs reset themselves and report the terminal observation.
    assert any(x.ndim == 1 and x.shape[0] > 2 for x in inline)
    with Rollouts(2) as pool:
        processes = _step_vec_env(make_vec_env(fns, pool))
    ray = _step_vec_env(make_vec_env(fns, ray_rollouts))
    assert type(make_vec_env(fns, ray_rollouts)).__name__ == "RayVecEnv"
    # SB3's DummyVecEnv keeps rewards as float32, SubprocVecEnv as float64: compared at float32 there.
    assert len(processes) == len(ray) == len(inline)
    for a, b, c in zip(inline, processes, ray):
        assert np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
        assert np.array_equal(b, c) and np.asarray(b).dtype == np.asarray(c).dtype
    # The two envs of one vec env were seeded apart: not the same episodes.
    assert not np.array_equal(inline[0][0], inline[0][1])


def test_train_rl_on_two_processes_and_on_ray_actors_gives_the_same_actor(tmp_path, ray_rollouts):
    from residual_control.training.common.config import load_train_config
    from residual_control.training.rl import train_rl

    cfg = load_train_config(ROOT / "config" / "train_rl.yaml", {
        "params_file": PARAMS, "network": {"hidden": [8, 8]}, "env": {"episode_seconds": 0.3},
        "rl": {"learning_starts": 40, "actor_freeze_steps": 0, "batch_size": 16, "critic_hidden": [16, 16],
               "stats_episodes": 1, "eval_episodes": 1, "eval_every": 60}})
    local = train_rl(cfg, str(tmp_path / "local"), seed=1, total_steps=120, progress=False, workers=2)
    ray = train_rl(cfg, str(tmp_path / "ray"), seed=1, total_steps=120, progress=False, workers=2,
                   ray_address="local")
    assert local["rollouts"]["n_envs"] == 2 and local["rollouts"]["gradient_steps"] == 2
    assert [r["rmse"] for r in local["curve"]] == [r["rmse"] for r in ray["curve"]]
    wl, _ = _weights(tmp_path / "local" / "checkpoint.pt")
    wr, meta = _weights(tmp_path / "ray" / "checkpoint.pt")
    for key in wl:
        assert torch.equal(wl[key], wr[key]), key
    # The actor learned (it started at exactly zero): the comparison is not between two untouched nets.
    assert float(wl["body.4.weight"].abs().sum()) > 0
    assert meta["joint_names"] == ["shoulder", "elbow"]
