"""`residual-control`: the package's command line.

Subcommands: ``up`` (start the runtime graph from a params file), ``demo``
(the closed-loop demo), ``params`` (the parameter table), and, when the
training extra is installed, ``train``, ``export``, ``evaluate`` and
``learn-bench``; ``bench``, ``faults`` and ``soak`` for performance and
reliability.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import signal
import sys
import time

from . import __version__

# Subcommand modules, each with add_arguments(parser) and run(args) -> int.
# Imported lazily so `residual-control up` never imports torch.
_TOOLS = {
    "demo": ("residual_control.harness.demo", "Closed-loop demo: base vs residual vs residual killed"),
    "bench": ("residual_control.harness.bench", "Latency, rate and overhead against the floor"),
    "faults": ("residual_control.harness.faults", "Fault-injection matrix on the closed loop"),
    "soak": ("residual_control.harness.soak", "Run the loop at 1 kHz and record memory, CPU, lateness"),
}


def _cmd_up(args) -> int:
    from .paths import default_params_file
    from .harness.graph import Graph, runtime_specs

    params = args.params_file or str(default_params_file())
    remaps = {"commands": args.command_topic} if args.command_topic != "commands" else {}
    specs = runtime_specs(params, args.namespace, args.model_path, args.use_sim_time, remaps, args.log_level)
    # SIGINT and SIGTERM, once or repeatedly, only ask the graph to stop: the processes are
    # stopped (SIGINT, then SIGTERM, then SIGKILL, each by its pid) whatever arrives meanwhile.
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    with Graph(specs, log_dir=args.log_dir) as graph:
        for label, proc in graph.processes.items():
            print(f"started {label} (pid {proc.pid}), log {proc.log_path}", flush=True)
        try:
            while not stop:
                time.sleep(0.2)
                graph.check_alive()
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        finally:
            # From here on ignored (SIG_IGN also holds through interpreter teardown).
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            print("stopping the graph", flush=True)
    return 0


def _cmd_params(args) -> int:
    from .core.params import BASE_PARAMS, MIXER_PARAMS, POLICY_PARAMS

    for title, specs in (("residual_mixer", MIXER_PARAMS), ("base_controller", BASE_PARAMS),
                         ("residual_policy", POLICY_PARAMS)):
        print(f"\n#### {title}\n\n| parameter | type | default | unit | description |\n|---|---|---|---|---|")
        for s in specs:
            rng = ""
            if s.min is not None or s.max is not None:
                low = "-inf" if s.min is None else f"{s.min:g}"
                high = "inf" if s.max is None else f"{s.max:g}"
                rng = f" Range {low} to {high}."
            if s.choices:
                rng += f" One of {', '.join(s.choices)}."
            ro = " Read-only." if s.read_only else ""
            print(f"| `{s.name}` | {s.kind} | `{s.default}` | {s.unit} | {s.description}.{rng}{ro} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="residual-control", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"residual_control {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="Start base_controller, residual_policy and residual_mixer")
    up.add_argument("--params-file", default="", help="ROS 2 params file (default: config/residual_control.yaml)")
    up.add_argument("--namespace", default="")
    up.add_argument("--model-path", default="")
    up.add_argument("--use-sim-time", action="store_true")
    up.add_argument("--command-topic", default="commands")
    up.add_argument("--log-level", default="info")
    up.add_argument("--log-dir", default=None, help="Folder for the nodes' logs (default: a temporary one)")
    up.set_defaults(func=_cmd_up)

    params = sub.add_parser("params", help="Print every node parameter as a Markdown table")
    params.set_defaults(func=_cmd_params)

    for name, (module, help_text) in _TOOLS.items():
        if importlib.util.find_spec(module) is None:
            continue  # a tool of a later release; a tool that exists but fails to import raises
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    if importlib.util.find_spec("torch") is not None:  # the training extra is installed
        from .training import cli as training_cli

        training_cli.add_subcommands(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
