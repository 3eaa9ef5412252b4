"""Start the node graph as separate processes from one params file, and stop it cleanly.

This is what ``residual-control up`` runs, and what the demo, the fault
matrix, the benchmarks and the graph tests use: the same graph that
``launch/residual_control.launch.py`` describes, for machines without
launch_ros. Every process gets its own process group and is stopped by its
own pid (SIGINT, then SIGTERM, then SIGKILL), never by name.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

MODULES = {
    "base_controller": "residual_control.nodes.base_controller",
    "residual_policy": "residual_control.nodes.residual_policy",
    "residual_mixer": "residual_control.nodes.residual_mixer",
    "residual_controller": "residual_control.nodes.residual_controller",
    "mujoco_sim": "residual_control.sim.mujoco_sim_node",
    "reference_publisher": "residual_control.sim.reference_node",
    "perception": "residual_control.sim.perception_node",
    "residual_recorder": "residual_control.nodes.recorder",
}

RUNTIME = ("base_controller", "residual_policy", "residual_mixer")


@dataclass
class NodeSpec:
    """One process of the graph."""

    executable: str
    params_files: Sequence[str] = ()
    params: Mapping[str, object] = field(default_factory=dict)
    remaps: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ""
    name: str = ""  # node name override
    log_level: str = "info"  # what a robot runs with: exercises every log call site

    def command(self, overlay_dir: str | os.PathLike | None = None) -> list[str]:
        """Return the command line. Generated params files go into ``overlay_dir`` (required then).

        ``params`` win over every entry of ``params_files``, and with a
        namespace the files' node-name keys are re-keyed to match: see
        :func:`residual_control.launch_params.node_params_files`, which the
        launch files use too.
        """
        from ..launch_params import node_params_files

        if self.executable not in MODULES:
            raise ValueError(f"executable: expected one of {sorted(MODULES)}, found {self.executable!r}")
        cmd = [sys.executable, "-m", MODULES[self.executable], "--ros-args", "--log-level", self.log_level]
        node = self.name or self.executable
        namespaced = bool(self.namespace.strip("/"))
        if overlay_dir is None and (self.params or namespaced):
            raise ValueError(f"{node}: expected a folder for the generated params files, found none")
        files = node_params_files([str(f) for f in self.params_files], node, dict(self.params),
                                  overlay_dir if overlay_dir is not None else "", namespaced)
        for f in files:
            cmd += ["--params-file", str(f)]
        for src, dst in self.remaps.items():
            cmd += ["-r", f"{src}:={dst}"]
        if self.namespace:
            ns = self.namespace if self.namespace.startswith("/") else "/" + self.namespace
            cmd += ["-r", f"__ns:={ns}"]
        if self.name:
            cmd += ["-r", f"__node:={self.name}"]
        return cmd


class Process:
    def __init__(self, spec: NodeSpec, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.label = spec.name or spec.executable
        self.log_path = log_dir / f"{self.label}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(spec.command(log_dir), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      env=dict(env) if env is not None else None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> int | None:
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if not self.alive():
                break
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        return self.popen.poll()

    def output(self) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Graph:
    """A set of node processes; a context manager that always stops them."""

    def __init__(self, specs: Sequence[NodeSpec] = (), log_dir: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._tmp = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="residual_control_")
            log_dir = self._tmp.name
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.processes: dict[str, Process] = {}
        for s in specs:
            self.start(s)

    def start(self, spec: NodeSpec) -> Process:
        label = spec.name or spec.executable
        old = self.processes.get(label)
        if old is not None and old.alive():
            raise RuntimeError(f"{label}: already running (pid {old.pid})")
        proc = Process(spec, self.log_dir, self.env)
        self.processes[label] = proc
        return proc

    def __getitem__(self, label: str) -> Process:
        return self.processes[label]

    def check_alive(self, ignore=()) -> None:
        """Raise with the logs of any process that exited (except those in ``ignore``)."""
        dead = {k: p.popen.returncode for k, p in self.processes.items() if k not in ignore and not p.alive()}
        if dead:
            details = "\n".join(f"--- {k} (exit {rc}) ---\n{self.processes[k].output()[-2000:]}"
                                for k, rc in dead.items())
            raise RuntimeError(f"graph processes exited: {dead}\n{details}")

    def stop(self) -> dict[str, int | None]:
        codes = {k: p.stop() for k, p in reversed(list(self.processes.items()))}
        return codes

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def runtime_specs(params_file: str, namespace: str = "", model_path: str = "", use_sim_time: bool = False,
                  remaps: Mapping[str, str] | None = None, log_level: str = "info") -> list[NodeSpec]:
    """Return the three runtime nodes, as launch/residual_control.launch.py starts them.

    The arguments win over the params file's entries, with or without a
    namespace (the files this takes are written in the graph's log folder).
    """
    common = {"use_sim_time": use_sim_time}
    specs = []
    for exe in RUNTIME:
        params = dict(common)
        if exe == "residual_policy" and model_path:
            params["model_path"] = model_path
        specs.append(NodeSpec(exe, [params_file], params, dict(remaps or {}), namespace, log_level=log_level))
    return specs


def wait_for(predicate, timeout: float, interval: float = 0.02, spin=None) -> bool:
    """Poll ``predicate`` (spinning ``spin()`` if given) until true or timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        if spin is not None:
            spin()
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        if spin is None:
            time.sleep(interval)
