"""Command-line functions of the training package (wired into ``residual-control`` by the CLI module).

``add_subcommands(subparsers)`` registers:

* ``train {bc,rl} [--config C | --quick] [--robot DIR] --out DIR [--seed N] [--episodes N | --steps N]
  [--workers N] [--ray-address A]``
* ``train finetune --bags BAG... --init MODEL [--config C] [--robot DIR] --out DIR [--seed N] [--episodes N]``
* ``export CHECKPOINT OUT.onnx [--params config/residual_control.yaml | --robot DIR]``
* ``evaluate MODEL.onnx [--robot DIR] [--plant P ...] [--json J] [--plot P] [--seconds S] [--workers N]
  [--ray-address A]``
* ``rollout-bench [--robot DIR] [--episodes N] [--workers N] [--seconds S] [--no-ray] [--json J]``
* ``learn-bench --config config/train_rl.yaml --out DIR [--bc-config config/train_bc.yaml] [--robot DIR]
  [--skip-rl|--skip-bc] [--init MODEL] [--variant CONFIG ...] [--target-factor F] [--no-baselines]
  [--resume]``

Each subparser sets ``func`` to a callable taking the parsed ``argparse.Namespace``.
"""
from __future__ import annotations

import argparse
import json
import sys


def robot_params_file(robot: str | None) -> str | None:
    """Return the params file of a robot folder (``--robot``), or None without one."""
    if not robot:
        return None
    from residual_control.robot.folder import load_robot

    spec = load_robot(robot)
    if spec.params is None:
        raise ValueError(f"robot {spec.name!r} ({spec.root}): expected a params file (robot.yaml params:), found "
                         "none; `residual-control robot init` writes one")
    return package_relative(spec.params)


def package_relative(path) -> str:
    """Return ``path`` relative to the package root where it lies inside (as the shipped configs name files).

    The training config's hash (and so the model's metadata) then does not depend on where the
    repository or the install is: ``robots/fer/params.yaml`` from any clone.
    """
    from pathlib import Path

    from residual_control.paths import share_path

    p = Path(path).resolve()
    roots = []
    for part in ("robots", "config"):
        try:
            roots.append(share_path(part).resolve().parent)
        except FileNotFoundError:
            pass
    for root in roots:
        if p.is_relative_to(root):
            return str(p.relative_to(root))
    return str(p)


def default_config(method: str, quick: bool) -> str:
    """Return the shipped training config of a method: config/train_<method>[_quick].yaml."""
    return f"config/train_{method}{'_quick' if quick else ''}.yaml"


def train(method: str, config_path: str | None, out_dir: str, seed: int | None = None, episodes: int | None = None,
          steps: int | None = None, progress: bool = True, robot: str | None = None, quick: bool = False,
          workers: int = 1, ray_address: str | None = None) -> dict:
    """Train a residual: ``config_path`` (default the method's shipped config), on ``robot``'s params file.

    ``workers`` / ``ray_address``: where the rollouts run (:class:`~.common.parallel.Rollouts`).
    """
    from .common.config import load_train_config

    if method not in ("bc", "rl"):
        raise ValueError(f"train: expected method 'bc' or 'rl', found {method!r}")
    params = robot_params_file(robot)
    cfg = load_train_config(config_path or default_config(method, quick), {"params_file": params} if params else None,
                            schema=method)
    if method == "bc":
        from .bc import train_bc

        return train_bc(cfg, out_dir, seed, episodes=episodes, progress=progress, workers=workers,
                        ray_address=ray_address)
    if method == "rl":
        from .rl import train_rl

        return train_rl(cfg, out_dir, seed, total_steps=steps, progress=progress, workers=workers,
                        ray_address=ray_address)
    raise ValueError(f"train: expected method 'bc' or 'rl', found {method!r}")


def _train_args(a) -> dict:
    if a.method == "finetune":
        if not a.bags or not a.init:
            raise SystemExit("train finetune: expected --bags BAG... and --init MODEL, found "
                             f"--bags {a.bags} --init {a.init}")
        if a.quick or a.steps is not None:
            raise SystemExit("train finetune: --quick and --steps are not options of finetune (see "
                             "config/train_finetune.yaml)")
        from .finetune import finetune

        return finetune(a.bags, a.init, a.out or "runs/finetune", a.config, a.robot, a.seed, a.episodes,
                        workers=a.workers, ray_address=a.ray_address)
    if a.bags or a.init:
        raise SystemExit(f"train {a.method}: --bags and --init are options of train finetune")
    return train(a.method, a.config, a.out or f"runs/{a.method}", a.seed, a.episodes, a.steps, robot=a.robot,
                 quick=a.quick, workers=a.workers, ray_address=a.ray_address)


def export(checkpoint: str, out_path: str, params_file: str | None = None) -> dict:
    from .export import export_checkpoint

    return export_checkpoint(checkpoint, out_path, params_file)


def evaluate(model_path: str, plant_path=None, json_path: str | None = None, plot_path: str | None = None,
             params_file: str = "config/residual_control.yaml", reference: str | None = None,
             seconds: float | None = None, progress: bool = True, workers: int = 1,
             ray_address: str | None = None) -> dict:
    """``evaluate``; plants and reference default to the robot's (robot_evaluation), seconds to the configs'."""
    from .common.parallel import Rollouts
    from .evaluate import DEFAULT_SECONDS, evaluate_model

    with Rollouts(workers, ray_address) as rollouts:
        return evaluate_model(model_path, plant_path, json_path, plot_path, params_file, reference,
                              DEFAULT_SECONDS if seconds is None else seconds, progress=progress, rollouts=rollouts)


def benchmark(config_path: str = "config/train_rl.yaml", out_dir: str = "runs/bench", seed: int | None = None,
              bc_config: str = "config/train_bc.yaml", rl: bool = True, bc: bool = True,
              steps: int | None = None, progress: bool = True, robot: str | None = None,
              init: str | None = None, variants=(), target_factor: float = 1.5, baselines: bool = True,
              resume: bool = False) -> dict:
    """``learn-bench``: the BC table and the RL curves, on ``robot``'s params file (default the configs').

    ``init``: an imitation residual to start residual SAC from (and the RMSE reference); ``variants``: more
    residual SAC configs; ``baselines``: also from-scratch SAC, the zero-init residual and the plain init run
    (training/benchmark.py).
    """
    from .benchmark import bc_table, rl_benchmark

    params = robot_params_file(robot)
    out = {}
    if bc:
        out["bc"] = bc_table(bc_config, out_dir, seed, progress=progress, params_file=params)
    if rl:
        out["rl"] = rl_benchmark(config_path, out_dir, seed, steps, progress=progress, params_file=params,
                                 init=init, variants=variants, target_factor=target_factor, baselines=baselines,
                                 resume=resume)
    return out


def _rollout_bench(a) -> dict:
    from .rollout_bench import rollout_bench

    report = rollout_bench(robot_params_file(a.robot), a.episodes, a.workers, not a.no_ray, a.seconds,
                           json_path=a.json, repeat=a.repeat)
    return {"rows": report["rows"], "load_average_before": report["load_average_before"],
            "load_average_after": report["load_average_after"]}


#: Keys of a result whose values are per-step series: the summary printed leaves them to the JSON file.
SERIES_KEYS = ("curve", "trace")
#: A list longer than this is printed as its length (the full list is in the JSON file).
SUMMARY_LIST_MAX = 64


def _summary(result: dict) -> str:
    """Return a command's result as the JSON it prints: everything but per-step series and long lists."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in SERIES_KEYS}
        if isinstance(x, list) and len(x) > SUMMARY_LIST_MAX:
            return f"<{len(x)} values: in the JSON file>"
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return json.dumps(strip(result), indent=2, default=str)


def _cmd(fn):
    """Wrap fn(args) -> dict into a subcommand: print a JSON summary, return exit status 0."""
    def run(args) -> int:
        print(_summary(fn(args)))
        return 0
    return run


def add_rollout_arguments(parser) -> None:
    """Add ``--workers`` and ``--ray-address`` (where the rollouts run) to a subcommand's parser."""
    parser.add_argument("--workers", type=_workers, default=1,
                        help="rollouts in N local worker processes (default 1: in this process); with "
                             "--ray-address, the number of chunks the episodes are split into")
    parser.add_argument("--ray-address", default=None,
                        help="run the rollouts as Ray tasks on this cluster ('local': a local Ray instance of "
                             "--workers CPUs; 'auto', host:port, ray://host:10001); needs `pip install ray`")


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {value}")
    return value


def add_subcommands(subparsers) -> None:
    robot_help = ("robot folder (with robot.yaml) or a shipped robot's name: its params file (default: the "
                  "config's params_file, the built-in arm)")
    p = subparsers.add_parser("train", help="train a residual policy (bc or rl), or fine-tune one from logs")
    p.add_argument("method", choices=["bc", "rl", "finetune"])
    p.add_argument("--config", default=None,
                   help="training config (default config/train_<method>.yaml, with --quick _quick.yaml)")
    p.add_argument("--robot", default=None, help=robot_help)
    p.add_argument("--quick", action="store_true", help="the quick recipe (config/train_<method>_quick.yaml)")
    p.add_argument("--out", default=None, help="output folder (default runs/<method>)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--episodes", type=int, default=None, help="bc: DAgger episodes (overrides the config)")
    p.add_argument("--steps", type=int, default=None, help="rl: env steps (overrides the config)")
    p.add_argument("--bags", nargs="+", default=None,
                   help="finetune: rosbag2 bags, folders of bags, or .npz episodes (training.sim_logs)")
    p.add_argument("--init", default=None, help="finetune: the residual to start from (ONNX or checkpoint.pt)")
    add_rollout_arguments(p)
    p.set_defaults(func=_cmd(_train_args))

    p = subparsers.add_parser("export", help="export a checkpoint to ONNX (checked, runtime-validated)")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--params", default=None, help="params file the runtime uses (default: the checkpoint's)")
    p.add_argument("--robot", default=None, help="robot folder or name: its params file (instead of --params)")
    p.set_defaults(func=_cmd(lambda a: export(a.checkpoint, a.out, a.params or robot_params_file(a.robot))))

    p = subparsers.add_parser("evaluate", help="closed-loop evaluation on the plant, no ROS")
    p.add_argument("model")
    p.add_argument("--plant", action="append", default=None,
                   help="plant YAML (repeatable; default: real + the acceptance plants)")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument("--params", default=None, help="params file (default: the robot's, config/residual_control.yaml)")
    p.add_argument("--robot", default=None, help="robot folder or name: its params file, plants and reference")
    p.add_argument("--reference", default=None,
                   help="reference params file (default: the training configs' evaluation.reference)")
    p.add_argument("--seconds", type=float, default=None,
                   help="closed-loop seconds per plant (default: the training configs' evaluation.seconds)")
    add_rollout_arguments(p)
    default_params = "config/residual_control.yaml"
    p.set_defaults(func=_cmd(lambda a: evaluate(a.model, a.plant, a.json, a.plot,
                                                a.params or robot_params_file(a.robot) or default_params,
                                                a.reference, a.seconds, workers=a.workers,
                                                ray_address=a.ray_address)))

    p = subparsers.add_parser("rollout-bench", help="speed-up of parallel rollouts (--workers, Ray) on this machine")
    p.add_argument("--robot", default=None, help=robot_help)
    p.add_argument("--episodes", type=int, default=16, help="DAgger episodes per timing (default 16)")
    p.add_argument("--workers", type=_workers, default=2, help="worker processes / Ray CPUs (default 2)")
    p.add_argument("--seconds", type=float, default=10.0, help="evaluation seconds per plant (default 10)")
    p.add_argument("--no-ray", action="store_true", help="leave out the local Ray instance")
    p.add_argument("--repeat", type=_workers, default=3, help="warm timings per setting, median (default 3)")
    p.add_argument("--json", default=None)
    p.set_defaults(func=_cmd(lambda a: _rollout_bench(a)))

    p = subparsers.add_parser("learn-bench", help="residual vs from-scratch RL curves and the BC table")
    p.add_argument("--config", default="config/train_rl.yaml")
    p.add_argument("--bc-config", default="config/train_bc.yaml")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--skip-rl", action="store_true")
    p.add_argument("--skip-bc", action="store_true")
    p.add_argument("--robot", default=None, help=robot_help)
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="imitation residual (.onnx/.pt): residual SAC starts from it; its RMSE is the reference")
    p.add_argument("--variant", action="append", default=[], metavar="CONFIG",
                   help="another residual SAC config to run (repeatable; takes --init unless it sets rl.init_from)")
    p.add_argument("--target-factor", type=float, default=1.5,
                   help="steps ratio target: this factor x the reference RMSE (default 1.5)")
    p.add_argument("--no-baselines", action="store_true",
                   help="only the --variant runs (no from-scratch, zero-init or plain --init run)")
    p.add_argument("--resume", action="store_true",
                   help="reuse finished runs in --out of the same config, seed, budget and initial model")
    p.set_defaults(func=_cmd(lambda a: benchmark(a.config, a.out, a.seed, a.bc_config, not a.skip_rl, not a.skip_bc,
                                            a.steps, robot=a.robot, init=a.init, variants=a.variant,
                                            target_factor=a.target_factor, baselines=not a.no_baselines,
                                            resume=a.resume)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="residual-control-train")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
