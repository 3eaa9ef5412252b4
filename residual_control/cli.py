"""`residual-control`: the package's command line.

Subcommands: ``up`` (start the runtime graph from a params file), ``record``
(a rosbag2 recording of the running graph), ``demo``
(the closed-loop demo), ``params`` (the parameter table), and, when the
training extra is installed, ``train``, ``export``, ``evaluate`` and
``learn-bench``; ``bench``, ``faults`` and ``soak`` for performance and
reliability; ``robot init|params|check`` to bring a robot (docs/robots.md).
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
    "logs-bench": ("residual_control.harness.logs_bench", "Record N episodes on a 'real robot' plant, fine-tune on "
                                                          "1, 3, 10, 30 of them, demo each (docs/logs.md)"),
    "mpc-bench": ("residual_control.harness.mpc_bench", "Solve time per call of the mpc base (p50, p99) against "
                                                        "the pd_gravity base's call, 2-link and 7-DoF arms"),
    "replay": ("residual_control.logs.replay", "Re-run the core loop on a recorded bag: reproduce it, or check "
                                               "another model on its states (docs/logs.md)"),
}


def _robot_files(args, command: str):
    """(robot or None, params file, model path) of ``--robot``/``--params-file``/``--model-path``; exit 2 on error."""
    from .paths import default_params_file

    robot = None
    if args.robot:
        from .robot.folder import RobotFolderError, load_robot

        try:
            robot = load_robot(args.robot)
        except RobotFolderError as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    params = args.params_file or str((robot and robot.params) or default_params_file())
    model_path = args.model_path or str((robot and robot.model) or "")
    return robot, params, model_path


def _recorder(args, out: str, params: str, model_path: str, mixer_node: str = "residual_mixer"):
    from .harness.closed_loop import recorder_spec

    command_topic = getattr(args, "command_topic", "commands")  # up's; the recorder reads commands there
    return recorder_spec(out, params, model_path, use_sim_time=args.use_sim_time, storage=args.storage,
                         robot=args.robot, namespace=args.namespace, mixer_node=mixer_node,
                         log_level=args.log_level,
                         remaps={"commands": command_topic} if command_topic != "commands" else None)


def up_specs(args, params: str, model_path: str) -> list:
    """Return the processes ``up`` starts (:class:`~residual_control.harness.graph.NodeSpec`).

    The three runtime nodes; with ``--external-base TOPIC`` only residual_policy and residual_mixer,
    reading TOPIC as their base_action (docs/external_base.md).
    """
    from .harness.graph import runtime_specs

    remaps = {"commands": args.command_topic} if args.command_topic != "commands" else {}
    specs = runtime_specs(params, args.namespace, model_path, args.use_sim_time, remaps, args.log_level)
    if args.external_base:
        specs = [s for s in specs if s.executable != "base_controller"]
        for s in specs:
            s.remaps = {**s.remaps, "base_action": args.external_base}
            s.params = {**s.params, "base_action_type": args.base_action_type}
    return specs


def _cmd_up(args) -> int:
    robot, params, model_path = _robot_files(args, "up")
    specs = up_specs(args, params, model_path)
    if args.record:
        from pathlib import Path

        out = Path(args.record) / time.strftime("up_%Y%m%d_%H%M%S", time.gmtime())
        specs.append(_recorder(args, str(out), params, model_path))
    return _run_graph(specs, args.log_dir)


def _cmd_record(args) -> int:
    from .logs.bag import topic_list

    if args.print_topics:
        print("\n".join(topic_list(args.namespace, args.mixer_node)))
        return 0
    if not args.out:
        print("record: --out: expected the bag folder to write, found none", file=sys.stderr)
        return 2
    from pathlib import Path

    if Path(args.out).exists():
        print(f"record: --out: expected a path where no bag exists yet, found {args.out}", file=sys.stderr)
        return 2
    _robot, params, model_path = _robot_files(args, "record")
    return _run_graph([_recorder(args, args.out, params, model_path, args.mixer_node)], args.log_dir)


def _run_graph(specs, log_dir) -> int:
    from .harness.graph import Graph

    # SIGINT and SIGTERM, once or repeatedly, only ask the graph to stop: the processes are
    # stopped (SIGINT, then SIGTERM, then SIGKILL, each by its pid) whatever arrives meanwhile.
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    with Graph(specs, log_dir=log_dir) as graph:
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


PARAMS_BEGIN = "<!-- parameter tables: generated by `residual-control params --readme README.md`; do not edit -->"
PARAMS_END = "<!-- end of the generated parameter tables -->"


def params_tables() -> str:
    """Return the Markdown parameter tables of the three nodes, generated from the schema (core.params)."""
    from .core.params import BASE_PARAMS, MIXER_PARAMS, POLICY_PARAMS

    lines = []
    for title, specs in (("residual_mixer", MIXER_PARAMS), ("base_controller", BASE_PARAMS),
                         ("residual_policy", POLICY_PARAMS)):
        lines += [f"#### {title}", "", "| parameter | type | default | unit | description |", "|---|---|---|---|---|"]
        for s in specs:
            rng = ""
            if s.min is not None or s.max is not None:
                low = "-inf" if s.min is None else f"{s.min:g}"
                high = "inf" if s.max is None else f"{s.max:g}"
                rng = f" Range {low} to {high}."
            if s.choices:
                rng += f" One of {', '.join(s.choices)}."
            ro = " Read-only." if s.read_only else ""
            default = "robot's params file" if s.robot_specific else f"`{s.default}`"
            lines.append(f"| `{s.name}` | {s.kind} | {default} | {s.unit} | {s.description}.{rng}{ro} |")
        lines.append("")
    return "\n".join(lines)


def readme_with_tables(text: str) -> str:
    """``text`` (a README) with the block between the two markers replaced by :func:`params_tables`."""
    if text.count(PARAMS_BEGIN) != 1 or text.count(PARAMS_END) != 1:
        raise ValueError(f"README: expected one line '{PARAMS_BEGIN}' and one '{PARAMS_END}', found "
                         f"{text.count(PARAMS_BEGIN)} and {text.count(PARAMS_END)}")
    head, rest = text.split(PARAMS_BEGIN)
    _, tail = rest.split(PARAMS_END)
    return f"{head}{PARAMS_BEGIN}\n\n{params_tables()}\n{PARAMS_END}{tail}"


def _cmd_params(args) -> int:
    if args.readme is None:
        print(params_tables())
        return 0
    from pathlib import Path

    path = Path(args.readme)
    text = path.read_text(encoding="utf-8")
    new = readme_with_tables(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    print(f"{path}: parameter tables {'rewritten' if new != text else 'already up to date'}")
    return 0


def _cmd_robot(args) -> int:
    if args.robot_command == "check":
        from .robot.check import run_check

        return run_check(args)
    from .robot import init

    return init.run_init(args) if args.robot_command == "init" else init.run_params(args)


def _add_robot_commands(sub) -> None:
    robot = sub.add_parser("robot", help="Bring your own robot: write (init, params) and validate (check) a robot "
                                         "folder (docs/robots.md)")
    cmds = robot.add_subparsers(dest="robot_command", required=True)
    init = cmds.add_parser("init", help="Write a robot folder from a URDF or MJCF, with values derived from it")
    init.add_argument("description", help="URDF or MJCF file")
    init.add_argument("--out", required=True, help="Robot folder to write (new or empty, unless --force)")
    init.add_argument("--joints", default="", help="Comma-separated joints to use, in command order "
                                                   "(default: every hinge/slide joint that mimics none)")
    init.add_argument("--package-path", action="append", default=[], metavar="DIR",
                      help="Folder holding the packages of package:// mesh URIs (repeatable)")
    init.add_argument("--payload-link", default=None, help="Link carrying the payload (default: the end of the "
                                                           "rigid chain after the last joint)")
    init.add_argument("--name", default=None, help="Robot name (default: the folder's name)")
    init.add_argument("--home", default="", help="Comma-separated start pose (default: the middle of each range)")
    init.add_argument("--workspace-lower", default="", help="Comma-separated lower corner of the workspace box "
                                                            "(with --workspace-upper; default: around home)")
    init.add_argument("--workspace-upper", default="", help="Comma-separated upper corner of the workspace box")
    init.add_argument("--copy", action="store_true", help="Copy the description into the folder instead of "
                                                          "referring to it by a relative path")
    init.add_argument("--force", action="store_true", help="Write into a folder that is not empty")
    params = cmds.add_parser("params", help="(Re)write params.yaml, reference.yaml and plants/shifted.yaml of a "
                                            "robot folder from its robot.yaml")
    params.add_argument("dir", help="Robot folder (with robot.yaml)")
    params.add_argument("--force", action="store_true", help="Rewrite files that exist")
    check = cmds.add_parser("check", help="Validate a robot folder and its description (exit 0: all checks pass)")
    check.add_argument("dir", help="Robot folder (with robot.yaml)")
    robot.set_defaults(func=_cmd_robot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="residual-control", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"residual_control {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="Start base_controller, residual_policy and residual_mixer (the last two "
                        "only with --external-base)")
    up.add_argument("--robot", default="", help="robot folder or shipped robot's name: its params file and model")
    up.add_argument("--params-file", default="", help="ROS 2 params file (default: the robot's, "
                    "config/residual_control.yaml)")
    up.add_argument("--namespace", default="")
    up.add_argument("--model-path", default="")
    up.add_argument("--use-sim-time", action="store_true")
    up.add_argument("--command-topic", default="commands")
    up.add_argument("--external-base", default="", metavar="TOPIC",
                    help="start only residual_policy and residual_mixer, on top of the base controller "
                         "publishing TOPIC (its output remapped to base_action; docs/external_base.md)")
    up.add_argument("--base-action-type", default="float64_multi_array",
                    choices=("float64_multi_array", "joint_state"),
                    help="with --external-base: what TOPIC carries (std_msgs/Float64MultiArray in the order of "
                         "joints, unstamped; or sensor_msgs/JointState, effort, stamped)")
    up.add_argument("--log-level", default="info")
    up.add_argument("--log-dir", default=None, help="Folder for the nodes' logs (default: a temporary one)")
    up.add_argument("--record", default="", metavar="DIR",
                    help="Also record the graph: a rosbag2 bag DIR/up_<UTC time> (docs/logs.md)")
    up.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="Storage of --record's bag")
    up.set_defaults(func=_cmd_up)

    record = sub.add_parser("record", help="Record the running graph's topics into a rosbag2 bag (MCAP or sqlite3)")
    record.add_argument("--out", default="", metavar="BAG", help="Bag folder to write (must not exist)")
    record.add_argument("--robot", default="", help="robot folder or shipped robot's name: its params file and "
                                                    "model go into the bag's metadata")
    record.add_argument("--params-file", default="", help="the graph's params file (default: the robot's)")
    record.add_argument("--model-path", default="", help="the policy's model (default: the robot's)")
    record.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    record.add_argument("--namespace", default="", help="the graph's namespace")
    record.add_argument("--mixer-node", default="residual_mixer",
                        help="node publishing applied_residual and mode (residual_controller for the fused node)")
    record.add_argument("--use-sim-time", action="store_true", help="stamp receipt times with /clock")
    record.add_argument("--print-topics", action="store_true",
                        help="print the fully qualified topics (for `ros2 bag record`) and exit")
    record.add_argument("--log-level", default="info")
    record.add_argument("--log-dir", default=None, help="Folder for the recorder's log (default: a temporary one)")
    record.set_defaults(func=_cmd_record)

    params = sub.add_parser("params", help="Print every node parameter as a Markdown table")
    params.add_argument("--readme", metavar="PATH", default=None,
                        help="Rewrite the generated tables of this README (between its two markers) instead")
    params.set_defaults(func=_cmd_params)

    _add_robot_commands(sub)

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
