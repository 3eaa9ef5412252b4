"""Where rollouts run: in this process, in local worker processes, or on a Ray cluster.

:class:`Rollouts` maps a module-level function over a list of picklable tasks and returns the results
in the tasks' order, wherever they ran:

* ``workers=1``, no ``ray_address``: in this process, one task after the other (``kind`` "inline");
* ``workers=N`` > 1: a pool of N local worker processes (``spawn``; each pins torch to one thread);
* ``ray_address``: Ray tasks (one CPU each) on the cluster at that address (``ray.init(address=...)``;
  ``"local"`` starts a local Ray instance of ``workers`` CPUs for this run). Ray is an optional extra
  (``pip install ray``) imported only here, only then; the runtime never imports this module. Every
  node of a cluster needs the package installed as on the driver: Ray ships no code here.

The callers (DAgger collection in :mod:`..bc`, evaluation over plants in :mod:`..evaluate`) give
every episode its own random generator, derived from the run's seed and the episode's index
(:func:`episode_rng`), so what a run collects depends on its seed and not on the number of workers or
on where they run (test/training/test_parallel.py checks it across inline, 2 and 3 processes and Ray).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

#: Spawned workers: one BLAS/torch thread each (the main process pins torch the same way).
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def episode_rng(seed: int, *index: int) -> np.random.Generator:
    """Return the random generator of one episode: from the run's ``seed`` and the episode's ``index``."""
    return np.random.default_rng([int(seed) % 2**63, *(int(i) for i in index)])


def split(n: int, parts: int) -> list[range]:
    """Split ``range(n)`` into ``parts`` contiguous ranges of sizes differing by at most one (none empty)."""
    parts = max(1, min(int(parts), int(n))) if n > 0 else 1
    sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    out, start = [], 0
    for size in sizes:
        out.append(range(start, start + size))
        start += size
    return out


def _pin_threads() -> None:
    for name in _THREAD_VARS:
        os.environ[name] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a training dependency
        pass


class Rollouts:
    """Run tasks inline, on local worker processes, or on Ray (see the module docstring)."""

    def __init__(self, workers: int = 1, ray_address: str | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise ValueError(f"workers: expected a whole number >= 1, found {workers!r}")
        if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
            raise ValueError(f"ray_address: expected a Ray address ('local', 'auto', 'ray://host:10001', "
                             f"host:port), found {ray_address!r}")
        self.workers = int(workers)
        self.ray_address = ray_address
        self.kind = "ray" if ray_address else ("process" if self.workers > 1 else "inline")
        self._pool = None
        self._ray = None
        self._ray_started = False

    @property
    def parallel(self) -> bool:
        """True when tasks run outside this process (worker processes or Ray)."""
        return self.kind != "inline"

    def describe(self) -> dict:
        return {"kind": self.kind, "workers": self.workers, "ray_address": self.ray_address}

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list:
        """Return ``[fn(task) for task in tasks]``, computed where this object runs tasks."""
        tasks = list(tasks)
        if self.kind == "inline" or not tasks:
            return [fn(t) for t in tasks]
        if self.kind == "process":
            return list(self._process_pool().map(fn, tasks))
        ray = self._ray_module()
        remote = ray.remote(num_cpus=1)(_ray_task)
        return ray.get([remote.remote(fn, t) for t in tasks])

    def _process_pool(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_pin_threads)
        return self._pool

    def _ray_module(self):
        if self._ray is None:
            try:
                import ray
            except ImportError as exc:
                raise RuntimeError(f"ray_address {self.ray_address!r}: expected the optional `ray` package "
                                   "(pip install ray), found it missing") from exc
            if not ray.is_initialized():
                env = {"env_vars": {name: "1" for name in _THREAD_VARS}}
                if self.ray_address == "local":
                    ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                             runtime_env=env)
                else:
                    ray.init(address=self.ray_address, log_to_driver=False, runtime_env=env)
                self._ray_started = True
            self._ray = ray
        return self._ray

    def close(self) -> None:
        """Stop the worker processes, and the Ray connection this object opened."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._ray is not None and self._ray_started:
            self._ray.shutdown()
        self._ray = None
        self._ray_started = False

    def __enter__(self) -> "Rollouts":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ray_task(fn: Callable[[Any], Any], task):
    """Run a task on a Ray worker: torch pinned to one thread, then ``fn(task)``."""
    _pin_threads()
    return fn(task)


def net_state(net) -> dict | None:
    """Return a picklable copy of a :class:`~.nets.ResidualPolicyNet` or ensemble (None for None)."""
    if net is None:
        return None
    return {"net": net.describe(), "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "clip": float(net.normalizer.clip)}


def net_from_state(state: dict | None):
    """Rebuild the network :func:`net_state` copied (None for None)."""
    if state is None:
        return None
    from .nets import net_from_description

    net = net_from_description(state["net"])
    net.load_state_dict(state["state_dict"])
    for m in getattr(net, "members", [net]):
        m.normalizer.clip = float(state["clip"])
    net.eval()
    return net


# ------------------------------------------------------------------------------------------- RL envs
def make_vec_env(env_fns: Sequence[Callable[[], Any]], rollouts: "Rollouts"):
    """Return the SB3 vectorised env of ``env_fns`` where ``rollouts`` runs tasks.

    inline: ``DummyVecEnv`` (in this process); process: ``SubprocVecEnv`` (one spawned process per env);
    ray: :class:`RayVecEnv` (one Ray actor per env). The three step the same envs the same way: with
    the same seeds they give the same transitions.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if rollouts.kind == "inline":
        return DummyVecEnv(list(env_fns))
    if rollouts.kind == "process":
        return SubprocVecEnv(list(env_fns), start_method="spawn")
    return RayVecEnv(list(env_fns), rollouts._ray_module())


def _env_call(env, cmd: str, data):
    """Serve one command of SB3's SubprocVecEnv protocol on ``env`` (what its worker process does)."""
    from stable_baselines3.common.env_util import is_wrapped

    if cmd == "step":
        observation, reward, terminated, truncated, info = env.step(data)
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info = {}
        if done:
            info["terminal_observation"] = observation
            observation, reset_info = env.reset()
        return observation, reward, done, info, reset_info
    if cmd == "reset":
        options = {"options": data[1]} if data[1] else {}
        return env.reset(seed=data[0], **options)
    if cmd == "get_spaces":
        return env.observation_space, env.action_space
    if cmd == "env_method":
        return env.get_wrapper_attr(data[0])(*data[1], **data[2])
    if cmd == "get_attr":
        return env.get_wrapper_attr(data)
    if cmd == "has_attr":
        try:
            env.get_wrapper_attr(data)
            return True
        except AttributeError:
            return False
    if cmd == "set_attr":
        return setattr(env, data[0], data[1])
    if cmd == "is_wrapped":
        return is_wrapped(env, data)
    if cmd == "render":
        return env.render()
    if cmd == "close":
        return env.close()
    raise NotImplementedError(f"env command: expected one of SubprocVecEnv's, found {cmd!r}")


class _EnvActor:
    """A Ray actor holding one env (built from its env function in the actor's process)."""

    def __init__(self, env_fn) -> None:
        from stable_baselines3.common.vec_env.patch_gym import _patch_env

        _pin_threads()
        self.env = _patch_env(env_fn())

    def call(self, cmd: str, data):
        return _env_call(self.env, cmd, data)


class _ActorPipe:
    """The end of a SubprocVecEnv pipe, over a Ray actor: ``send`` starts a call, ``recv`` waits for it."""

    def __init__(self, ray, actor) -> None:
        self.ray, self.actor, self.pending = ray, actor, []

    def send(self, message) -> None:
        cmd, data = message
        self.pending.append(self.actor.call.remote(cmd, data))

    def recv(self):
        return self.ray.get(self.pending.pop(0))

    def close(self) -> None:
        self.ray.kill(self.actor)


def _ray_vec_env_class():
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv

    class RayVecEnv(SubprocVecEnv):
        """SB3's SubprocVecEnv with each env in a Ray actor (one CPU) instead of a local process.

        Every method but the constructor is SubprocVecEnv's: the actors serve its pipe protocol
        (:func:`_env_call`), so it steps and resets exactly as SubprocVecEnv does.
        """

        def __init__(self, env_fns, ray) -> None:
            self.waiting = False
            self.closed = False
            actor = ray.remote(num_cpus=1)(_EnvActor)
            self.remotes = [_ActorPipe(ray, actor.remote(fn)) for fn in env_fns]
            self.processes = []
            self.remotes[0].send(("get_spaces", None))
            observation_space, action_space = self.remotes[0].recv()
            VecEnv.__init__(self, len(env_fns), observation_space, action_space)

    return RayVecEnv


def RayVecEnv(env_fns, ray):  # noqa: N802 - a class built on first use (SB3 is imported only then)
    """Return a Ray-actor vectorised env of ``env_fns`` (see :func:`_ray_vec_env_class`)."""
    return _ray_vec_env_class()(env_fns, ray)
