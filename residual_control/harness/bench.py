"""`residual-control bench`: latency, rate and overhead of the runtime against a floor.

Every number is compared with the cheapest thing that does the same job (the
"floor"), measured in the same run on the same machine:

===========  ==============================================  ============================================
section      measured                                        floor
===========  ==============================================  ============================================
mixer_step   ``Mixer.step`` (2, 7, 12 joints, nominal mode,  ``np.clip`` of a vector of the same size
             names + values as a message carries them)       (and a no-op Python call, for reference)
inference    ``PolicyRunner.infer`` per model, one thread    raw ``InferenceSession.run`` of the same
             vs the same graph in torch eager                model (the wrapper's checks are the gap)
hop          base_action -> residual_mixer -> commands       bare rclpy relay base_action -> commands
graph        joint_states -> 3 nodes -> commands             relay chain of the same shape
fused        joint_states -> residual_controller -> commands one bare relay joint_states -> commands
resources    CPU share and RSS of each process at 1 kHz      --
executors    hop at 1 kHz per executor / relay QoS variant   --
===========  ==============================================  ============================================

Latencies are measured with stamps carried in the messages on the host's
system clock (the harness and the nodes run on one machine): the hop's base
action carries a sequence number in its effort (the residual is zero, so the
command equals the base action), the graph's joint state stamp comes back in
the last node's ``~/applied_residual`` (published right after ``commands``
in the same callback). "lost or late" is the share of inputs with no output,
or an output later than one period.

The relays and the harness live in this module; ``python -m
residual_control.harness.bench relay --kind ... --joints a,b`` runs one relay.

On any robot (``--robot DIR``, default the built-in arm): the graphs run its params file and joints
(inputs at its home pose), the graph model is its model (a synthetic MLP of its contract when it has
none), the inference section times the shipped models made for its joints (or that MLP).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEQ_SCALE = 1e-3  # hop: base effort[0] = (seq % SEQ_MOD) * seq_scale, inside command limits (seq_scale)
SEQ_MOD = 40000
PERCEPTION_EVERY = 10  # perception at rate / 10


# ============================================================================ helpers
def _stats(samples_us, floor_p50: float | None = None) -> dict:
    a = np.asarray(samples_us, dtype=float)
    if a.size == 0:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan"), "mean": float("nan")}
    out = {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
           "max": float(a.max()), "mean": float(a.mean())}
    if floor_p50:
        out["ratio_p50"] = out["p50"] / floor_p50
    return out


def _timeit(fn, n: int, warmup: int = 200) -> np.ndarray:
    """Per-call wall time of fn() in µs."""
    clock = time.perf_counter_ns
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out / 1000.0


def _ensure_private_ros_env() -> None:
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(50, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")


# ============================================================================ a. mixer step
def bench_mixer(n_samples: int) -> dict:
    from array import array

    from ..core.mixer import Mixer, MixerConfig

    out = {"unit": "us", "floor": "np.clip(x, lo, hi) of a float64 vector of the same size; "
                                  "noop = an empty Python function call"}
    noop = _timeit(lambda: None, n_samples)
    out["noop_call"] = _stats(noop)
    for n in (2, 7, 12):
        joints = [f"joint_{i}" for i in range(n)]
        cfg = MixerConfig(joints, [1.0] * n, [2.0] * n, [-50.0] * n, [50.0] * n,
                          recovery_hold_time=0.0, recovery_ramp_time=0.0)
        mixer = Mixer(cfg)
        # As a JointState delivers them: a list of str and an array.array('d').
        names = list(joints)
        base = array("d", np.linspace(-10, 10, n))
        residual = array("d", np.linspace(-1.5, 1.5, n))
        clock = {"t": 0.0}

        def step():
            clock["t"] += 0.001
            t = clock["t"]
            mixer.update_residual(names, residual, t, t)
            return mixer.step(names, base, t, t)

        def step_only():
            clock["t"] += 0.001
            t = clock["t"]
            mixer.update_residual(names, residual, t, t)
            t0 = time.perf_counter_ns()
            mixer.step(names, base, t, t)
            return time.perf_counter_ns() - t0

        for _ in range(500):
            step()
        assert mixer.mode.value == "nominal", mixer.reason
        samples = np.array([step_only() for _ in range(n_samples)]) / 1000.0
        upd = _timeit(lambda: mixer.update_residual(names, residual, clock["t"], clock["t"]), n_samples)
        x = np.linspace(-10, 10, n)
        lo, hi = np.full(n, -1.0), np.full(n, 1.0)
        floor = _timeit(lambda: np.clip(x, lo, hi), n_samples)
        fs = _stats(floor)
        out[f"{n}_joints"] = {"step": _stats(samples, fs["p50"]), "update_residual": _stats(upd),
                              "floor_np_clip": fs}
    return out


# ============================================================================ b. inference
_TORCH_OPS = ("Sub", "Div", "Mul", "Add", "Clip", "Gemm", "MatMul", "Relu", "Tanh", "Sigmoid", "Max", "Min",
              "Identity")


def torch_from_onnx(path: str):
    """Return the ONNX graph as a torch eager callable: each node one torch op, the initializers as tensors.

    Supports the ops the project's exporters and synthetic models use
    (``_TORCH_OPS``); raises ValueError on anything else.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(path)
    g = model.graph
    consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float32).copy()) for t in g.initializer}
    plan = []
    for node in g.node:
        if node.op_type not in _TORCH_OPS:
            raise ValueError(f"{path}: op {node.op_type} not supported by the torch translation")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plan.append((node.op_type, list(node.input), node.output[0], attrs))
    out_name = g.output[0].name
    in_name = g.input[0].name

    def gemm(a, b, c, attrs):
        if attrs.get("transA", 0):
            a = a.t()
        if attrs.get("transB", 0):
            b = b.t()
        y = attrs.get("alpha", 1.0) * (a @ b)
        return y + attrs.get("beta", 1.0) * c if c is not None else y

    ops = {
        "Sub": lambda x, a: x[0] - x[1], "Div": lambda x, a: x[0] / x[1], "Mul": lambda x, a: x[0] * x[1],
        "Add": lambda x, a: x[0] + x[1], "MatMul": lambda x, a: x[0] @ x[1],
        "Relu": lambda x, a: torch.relu(x[0]), "Tanh": lambda x, a: torch.tanh(x[0]),
        "Sigmoid": lambda x, a: torch.sigmoid(x[0]), "Identity": lambda x, a: x[0],
        "Max": lambda x, a: torch.maximum(x[0], x[1]), "Min": lambda x, a: torch.minimum(x[0], x[1]),
        "Clip": lambda x, a: torch.clamp(x[0], x[1] if len(x) > 1 else None, x[2] if len(x) > 2 else None),
        "Gemm": lambda x, a: gemm(x[0], x[1], x[2] if len(x) > 2 else None, a),
    }

    @torch.inference_mode()
    def run(obs: np.ndarray) -> np.ndarray:
        env = dict(consts)
        env[in_name] = torch.from_numpy(np.asarray(obs, np.float32).reshape(1, -1))
        for op, inputs, output, attrs in plan:
            env[output] = ops[op]([env[i] if i else None for i in inputs], attrs)
        return env[out_name].numpy().reshape(-1)

    return run


def _expectations_for(path: str):
    """PolicyExpectations matching a model's own metadata (any joints, perception features)."""
    import onnx

    from ..core.policy import ModelContract, PolicyExpectations

    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    c = ModelContract.from_metadata(meta, source=path)
    features = tuple(n.split("/", 1)[1] for n in c.observation_names if n.startswith("perception/"))
    return c, PolicyExpectations(c.joint_names, c.residual_limit, c.control_rate_hz, features)


def bench_inference(models: dict[str, str], n_samples: int) -> dict:
    import torch

    from ..core.policy import PolicyRunner

    torch.set_num_threads(1)
    out = {"unit": "us", "floor": "raw onnxruntime InferenceSession.run of the same model (no checks)",
           "torch_threads": torch.get_num_threads(), "models": {}}
    rng = np.random.default_rng(0)
    for label, path in models.items():
        contract, expect = _expectations_for(path)
        runner = PolicyRunner(path, expect)
        obs = rng.normal(0.0, 0.5, runner.n_obs).astype(np.float32)
        session = runner._session
        feed = {"observation": obs.reshape(1, -1)}
        raw = _timeit(lambda: session.run(["residual"], feed), n_samples)
        fs = _stats(raw)
        entry = {"path": str(path), "n_obs": runner.n_obs, "n_act": runner.n_act,
                 "raw_session_run": fs, "policy_runner_infer": _stats(_timeit(lambda: runner.infer(obs), n_samples),
                                                                      fs["p50"])}
        try:
            net = torch_from_onnx(path)
            diff = float(np.max(np.abs(net(obs) - runner.infer(obs))))
            entry["torch_eager"] = _stats(_timeit(lambda: net(obs), n_samples), fs["p50"])
            entry["torch_max_abs_diff"] = diff
        except ValueError as exc:
            entry["torch_eager"] = {"error": str(exc)}
        out["models"][label] = entry
    return out


def seq_scale(command_max: float) -> float:
    """Return the hop's sequence scale: SEQ_SCALE, smaller where the first joint's command_max is below 40 N m.

    Every encoded sequence number (up to SEQ_MOD - 1) then stays below 0.9 command_max, unclipped.
    """
    if not (math.isfinite(command_max) and command_max > 0):
        raise ValueError(f"bench: expected the first joint's command_max > 0, found {command_max}")
    return min(SEQ_SCALE, 0.9 * command_max / SEQ_MOD)


def synthetic_mlp(path: str, joints, features, limit, control_rate_hz: float = 100.0, hidden=(64, 64),
                  seed: int = 0) -> str:
    """Write an MLP with the shipped models' architecture and a robot's contract, exported by torch.onnx."""
    import torch

    from ..core.observation import default_observation_names
    from ..core.policy import ModelContract

    joints, limit = list(joints), [float(x) for x in limit]
    obs_names = default_observation_names(joints, list(features))
    torch.manual_seed(seed)
    layers, n = [], len(obs_names)
    for h in hidden:
        layers += [torch.nn.Linear(n, h), torch.nn.ReLU()]
        n = h
    layers += [torch.nn.Linear(n, len(joints)), torch.nn.Tanh()]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(*layers)
            self.register_buffer("limit", torch.tensor([limit], dtype=torch.float32))

        def forward(self, observation):
            return self.body(observation) * self.limit

    net = Net().eval()
    torch.onnx.export(net, (torch.zeros(1, len(obs_names)),), path, input_names=["observation"],
                      output_names=["residual"], opset_version=17, dynamo=False)
    import onnx

    m = onnx.load(path)
    contract = ModelContract(tuple(joints), tuple(obs_names), tuple(limit), float(control_rate_hz),
                             {"type": "pd_gravity"},
                             {"training_method": "synthetic_mlp"})
    for k, v in contract.to_metadata().items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, path)
    return path


# ============================================================================ relays
def _relay_qos(reliability: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                      else ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def _make_relay(kind: str, stamped: bool, reliability: str, depth: int, joints):
    """Return a bare relay node: the same topics and fan-out as the node it stands in for, no computation."""
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    qos = _relay_qos(reliability, depth)
    node = Node(f"relay_{kind}")
    keep = {}

    def store(key):
        return lambda msg: keep.__setitem__(key, msg)

    if kind in ("hop", "mixer", "single"):
        cmd_pub = node.create_publisher(Float64MultiArray, "commands", qos)
        applied_pub = node.create_publisher(JointState, "~/applied_residual", qos) if stamped else None
        cmd, applied = Float64MultiArray(), JointState(name=list(joints))
        zeros = [0.0] * len(joints)

        def forward(msg):
            cmd.data = msg.effort if kind != "single" else msg.position
            cmd_pub.publish(cmd)
            if applied_pub is not None:
                applied.header.stamp = msg.header.stamp
                applied.effort = zeros
                applied_pub.publish(applied)

        trigger = "joint_states" if kind == "single" else "base_action"
        node.create_subscription(JointState, trigger, forward, qos)
        if kind in ("hop", "mixer"):
            node.create_subscription(JointState, "residual_action", store("residual"), qos)
        else:
            node.create_subscription(JointState, "reference", store("reference"), qos)
            node.create_subscription(Float64MultiArray, "perception", store("perception"), qos)
    elif kind == "base":
        pub = node.create_publisher(JointState, "base_action", qos)
        out = JointState(name=list(joints))

        def on_state(msg):
            out.header.stamp = msg.header.stamp
            out.effort = msg.position
            pub.publish(out)

        node.create_subscription(JointState, "joint_states", on_state, qos)
        node.create_subscription(JointState, "reference", store("reference"), qos)
    elif kind == "policy":
        pub = node.create_publisher(JointState, "residual_action", qos)
        out = JointState(name=list(joints), effort=[0.0] * len(joints))

        def on_base(msg):
            out.header.stamp = msg.header.stamp
            pub.publish(out)

        node.create_subscription(JointState, "base_action", on_base, qos)
        node.create_subscription(JointState, "joint_states", store("state"), qos)
        node.create_subscription(JointState, "reference", store("reference"), qos)
        node.create_subscription(Float64MultiArray, "perception", store("perception"), qos)
    else:
        raise ValueError(f"relay kind: expected hop, mixer, single, base or policy, found {kind!r}")
    return node


def relay_main(argv) -> int:
    from ..nodes.process import run_node

    ros_args = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    ap = argparse.ArgumentParser(prog="bench relay")
    ap.add_argument("--kind", required=True)
    ap.add_argument("--stamped", action="store_true")
    ap.add_argument("--reliability", default="reliable", choices=("reliable", "best_effort"))
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--joints", required=True, help="comma-separated joint names of the robot")
    a = ap.parse_args(argv)
    joints = [j for j in a.joints.split(",") if j]
    return run_node(lambda: _make_relay(a.kind, a.stamped, a.reliability, a.depth, joints), ["relay"] + ros_args)


def _relay_spec(name: str, kind: str, joints, stamped: bool = False, reliability: str = "reliable", depth: int = 1):
    from .graph import NodeSpec

    class RelaySpec(NodeSpec):
        def command(self, overlay_dir=None):
            cmd = [sys.executable, "-m", "residual_control.harness.bench", "relay", "--kind", kind,
                   "--reliability", reliability, "--depth", str(depth), "--joints", ",".join(joints)]
            if stamped:
                cmd.append("--stamped")
            return cmd + ["--ros-args", "--log-level", "warn", "-r", f"__node:={name}"]

    return RelaySpec(executable="relay", name=name)


# ============================================================================ harness
class ServiceProbe:
    """Round trips of a node's GetParameters service while the harness drives it (``ros2 param get``'s call).

    ``rtt_ms``: answered calls; ``unanswered``: calls with no answer by the end of the run.
    """

    def __init__(self, node, target: str) -> None:
        from rcl_interfaces.srv import GetParameters

        self._client = node.create_client(GetParameters, f"/{target}/get_parameters")
        self._request = GetParameters.Request(names=["use_sim_time"])
        self._pending: list = []
        self.rtt_ms: list[float] = []

    def call(self) -> None:
        self.poll()
        if self._client.service_is_ready():
            self._pending.append((time.perf_counter(), self._client.call_async(self._request)))

    def poll(self) -> None:
        """Note the answers that arrived (called every period by the drive loop: 1 period resolution)."""
        if self._pending:
            now = time.perf_counter()
            for t0, fut in self._pending:
                if fut.done():
                    self.rtt_ms.append((now - t0) * 1e3)
            self._pending = [(t0, f) for t0, f in self._pending if not f.done()]

    def _collect(self) -> None:
        self.poll()

    def result(self) -> dict:
        self._collect()
        a = np.asarray(self.rtt_ms)
        return {"answered": int(a.size), "unanswered": len(self._pending),
                "rtt_ms_p50": float(np.median(a)) if a.size else None,
                "rtt_ms_max": float(a.max()) if a.size else None}


class Harness:
    """Drives the inputs at a fixed rate from one thread and records the outputs' arrival."""

    def __init__(self, final: str, inputs: "Inputs", reliability: str = "reliable") -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String

        from ..nodes.qos import CONTROL_QOS, LATCHED_QOS

        self.node = Node(f"bench_harness_{os.getpid()}")
        pub_qos = CONTROL_QOS if reliability == "reliable" else _relay_qos(reliability, 1)
        # Deep reader queues: the harness must not be where samples are dropped.
        rx_qos = _relay_qos(reliability, 256)
        n = self.node
        self.js_pub = n.create_publisher(JointState, "joint_states", pub_qos)
        self.ref_pub = n.create_publisher(JointState, "reference", pub_qos)
        self.perc_pub = n.create_publisher(Float64MultiArray, "perception", pub_qos)
        self.base_pub = n.create_publisher(JointState, "base_action", pub_qos)
        self.res_pub = n.create_publisher(JointState, "residual_action", pub_qos)
        self.cmd_rx: list = []
        self.app_rx: list = []
        self.mode = ""
        clock = time.time_ns
        self.seq_scale = inputs.seq_scale
        n.create_subscription(Float64MultiArray, "commands",
                              lambda m: self.cmd_rx.append((clock(), m.data[0])), rx_qos)
        n.create_subscription(JointState, f"/{final}/applied_residual",
                              lambda m: self.app_rx.append((clock(), m.header.stamp.sec * 1_000_000_000
                                                            + m.header.stamp.nanosec)), rx_qos)
        n.create_subscription(String, f"/{final}/mode", lambda m: setattr(self, "mode", m.data), LATCHED_QOS)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        # The harness receives on the lean loop too: on 2 cores it must not be where the time goes.
        from ..nodes.lean import LeanLoop

        self.loop = LeanLoop(n, self.executor)
        self.service_probe: "ServiceProbe | None" = None
        joints, zeros = list(inputs.joints), [0.0] * len(inputs.joints)
        self._js = JointState(name=joints, position=[float(x) for x in inputs.q], velocity=zeros)
        self._ref = JointState(name=joints, position=[float(x) for x in inputs.q_ref], velocity=zeros)
        self._perc = Float64MultiArray(data=[0.5] * inputs.n_features)
        self._base = JointState(name=joints, effort=zeros)
        self._res = JointState(name=joints, effort=zeros)
        self._rest = zeros[1:]

    def close(self) -> None:
        self.loop.close()
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    @staticmethod
    def _stamp(msg, t_ns: int) -> None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t_ns, 1_000_000_000)

    def _send(self, mode: str, seq: int) -> int:
        t = time.time_ns()
        if mode == "hop":
            self._stamp(self._res, t)
            self.res_pub.publish(self._res)
            self._stamp(self._base, t)
            self._base.effort = [(seq % SEQ_MOD) * self.seq_scale] + self._rest
            self.base_pub.publish(self._base)
        else:
            self._stamp(self._ref, t)
            self.ref_pub.publish(self._ref)
            if seq % PERCEPTION_EVERY == 0:
                self.perc_pub.publish(self._perc)
            self._stamp(self._js, t)
            self.js_pub.publish(self._js)
        return t

    def drive(self, mode: str, rate_hz: float, duration: float, on_start=None) -> list[tuple[int, int]]:
        """Publish at rate_hz for duration s; returns (seq, send time ns). Callbacks run between sends."""
        period = 1.0 / rate_hz
        sent = []
        pc = time.perf_counter
        start = pc()
        nxt = start
        seq = 0
        if on_start is not None:
            on_start()
        probe = self.service_probe
        next_probe = start + 0.5
        while True:
            now = pc()
            if now - start >= duration:
                break
            if probe is not None:
                probe.poll()
                if now >= next_probe:
                    next_probe = now + 0.5
                    probe.call()
            while True:
                rem = nxt - pc()
                if rem <= 0:
                    break
                self.loop.spin_once(rem)
            sent.append((seq, self._send(mode, seq)))
            seq += 1
            nxt += period
            if pc() - nxt > 5 * period:  # fell far behind: skip rather than burst
                nxt = pc()
        return sent

    def probe_service(self, node_name: str) -> None:
        """Ask ``node_name``'s GetParameters service every 0.5 s of the next drives; see :class:`ServiceProbe`."""
        self.service_probe = ServiceProbe(self.node, node_name)

    def spin_for(self, duration: float) -> None:
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            self.loop.spin_once(0.005)

    def wait_first_output(self, mode: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.drive(mode, 100.0, 0.1)
            if (self.cmd_rx if mode == "hop" else self.app_rx):
                return True
        return False


def _proc_sample(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a process."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return cpu, rss


def _thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks (user + system) per thread name of a process (threads of one name summed)."""
    out: dict[str, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        # Fast DDS names its threads per port (dds.shm.7411): one name per kind
        kind = name.rsplit(".", 1)[0] if name.startswith("dds.") and name.rsplit(".", 1)[-1].isdigit() else name
        out[kind] = out.get(kind, 0) + int(fields[11]) + int(fields[12])
    return out


def measure(harness: Harness, mode: str, rate_hz: float, duration: float, warmup: float,
            pids: dict[str, int] | None = None) -> dict:
    """One latency run: warm up, measure, drain, and compute the statistics."""
    period_us = 1e6 / rate_hz
    if not harness.wait_first_output(mode, 30.0):
        return {"error": "no output within 30 s", "rate_hz": rate_hz}
    harness.drive(mode, rate_hz, warmup)
    harness.cmd_rx.clear()
    harness.app_rx.clear()
    if harness.service_probe is not None:
        harness.service_probe.rtt_ms.clear()
    before = {}

    def start_resources():
        for k, pid in (pids or {}).items():
            before[k] = (time.monotonic(),) + _proc_sample(pid) + (_thread_ticks(pid),)

    sent = harness.drive(mode, rate_hz, duration, on_start=start_resources)
    resources = {}
    for k, pid in (pids or {}).items():
        t1 = time.monotonic()
        cpu1, rss1 = _proc_sample(pid)
        threads1 = _thread_ticks(pid)
        t0, cpu0, _, threads0 = before[k]
        tick = os.sysconf("SC_CLK_TCK")
        resources[k] = {"pid": pid, "cpu_share": (cpu1 - cpu0) / (t1 - t0), "rss_mib": rss1 / 2**20,
                        "threads_cpu_share": {name: round((t - threads0.get(name, 0)) / tick / (t1 - t0), 4)
                                              for name, t in threads1.items() if t - threads0.get(name, 0) > 0}}
    harness.spin_for(0.3)
    if mode == "hop":
        send = {seq % SEQ_MOD: t for seq, t in sent}
        lat = {}
        for t_rx, v in harness.cmd_rx:
            seq = int(round(v / harness.seq_scale))
            if seq in send and seq not in lat:
                lat[seq] = (t_rx - send[seq]) / 1000.0
    else:
        send = {t: t for _, t in sent}
        lat = {}
        for t_rx, stamp in harness.app_rx:
            if stamp in send and stamp not in lat:
                lat[stamp] = (t_rx - stamp) / 1000.0
    values = np.array(list(lat.values()))
    n = len(sent)
    lost = n - len(lat)
    late = int(np.sum(values > period_us)) if values.size else 0
    out = {"rate_hz": rate_hz, "sent": n, "achieved_rate_hz": n / duration, "unit": "us",
           "latency": _stats(values), "lost": lost, "late": late,
           "lost_or_late_share": (lost + late) / n if n else float("nan"), "mode": harness.mode}
    if resources:
        out["resources"] = resources
    if harness.service_probe is not None:
        out["parameter_service"] = harness.service_probe.result()
    return out


# ============================================================================ graphs
@dataclass(frozen=True)
class Inputs:
    """What the harness publishes to the graph: the robot's joints at its home, a reference near it."""

    joints: tuple
    q: tuple
    q_ref: tuple
    n_features: int
    seq_scale: float

    @classmethod
    def of(cls, robot, params_file: str) -> "Inputs":
        from ..params_file import load, node_params
        from .faults.probe_driven import reference_near, step_bound

        params = load(params_file)
        joints = tuple(node_params(params, "residual_mixer")["joints"])
        if joints != tuple(robot.joints):
            raise ValueError(f"{params_file}: expected the joints of robot {robot.name!r} {list(robot.joints)}, "
                             f"found {list(joints)}")
        q_ref = reference_near(robot.home, robot.workspace_lower, robot.workspace_upper, step_bound(params))
        return cls(joints, tuple(float(x) for x in robot.home), tuple(float(x) for x in q_ref),
                   len(node_params(params, "residual_policy")["perception_features"]),
                   seq_scale(float(node_params(params, "residual_mixer")["command_max"][0])))


def _params_file(tmp: Path, robot_params: str, model_path: str, control_rate_hz: float) -> str:
    import yaml

    from ..nodes.residual_controller import NODE_NAME, fused_parameters
    from ..params_file import load, update_section

    params = load(robot_params)
    update_section(params, "residual_policy", model_path=model_path, control_rate_hz=control_rate_hz)
    update_section(params, "residual_mixer", recovery_hold_time=0.05, recovery_ramp_time=0.05)
    params[NODE_NAME] = {"ros__parameters": fused_parameters(params)}
    path = tmp / "bench_params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def _run_case(specs, final: str, mode: str, rates, duration: float, warmup: float, log_dir: Path,
              env_extra: dict | None = None, reliability: str = "reliable", resources_at: float | None = None,
              inputs: Inputs | None = None) -> dict:
    from .graph import Graph

    env = dict(os.environ)
    env.update(env_extra or {})
    harness = Harness(final, inputs, reliability)
    harness.probe_service(final)  # the parameter service of the node that publishes the output, while it runs
    results = {}
    try:
        with Graph(specs, log_dir=log_dir, env=env) as g:
            pids = {label: p.pid for label, p in g.processes.items()}
            pids["harness"] = os.getpid()
            for rate in rates:
                r = measure(harness, mode, rate, duration, warmup, pids if rate == resources_at else None)
                results[f"{int(rate)}hz"] = r
                if "error" in r:
                    dead = {k: p.popen.poll() for k, p in g.processes.items() if not p.alive()}
                    r["dead"] = dead
                    r["logs"] = {k: p.output()[-600:] for k, p in g.processes.items()}
                    break
    finally:
        harness.close()
    return results


def _ratio(case: dict, floor: dict, key: str = "ratio_p50") -> None:
    for rate, r in case.items():
        f = floor.get(rate, {})
        try:
            r["latency"][key] = r["latency"]["p50"] / f["latency"]["p50"]
        except (KeyError, TypeError, ZeroDivisionError):
            pass


#: The loops compared (``RESIDUAL_CONTROL_EXECUTOR``): rclpy's SingleThreadedExecutor and the lean
#: wait-set loop (nodes/lean.py). A bare relay on each is a floor.
LOOPS = ("lean", "single")


def _loop_env(loop: str, service: str = "") -> dict:
    env = {"RESIDUAL_CONTROL_EXECUTOR": loop}
    if service:
        env["RESIDUAL_CONTROL_LEAN_SERVICE"] = service
    return env


def _median_run(runs: list[dict]) -> dict:
    """Of repeated runs of one case, per rate the run of median lost-or-late share (then p50), with every run's numbers.

    On a shared 2-core machine one run can land on a busy second; the median of a few is what the case does.
    """
    if len(runs) == 1:
        return runs[0]
    out = {}
    for rate in runs[0]:
        ok = [r[rate] for r in runs if rate in r and "latency" in r[rate]]
        if not ok:
            out[rate] = runs[0][rate]
            continue
        ok.sort(key=lambda r: (r["lost_or_late_share"], r["latency"]["p50"]))
        chosen = dict(ok[len(ok) // 2])
        chosen["repeats"] = [{"p50": r["latency"]["p50"], "p99": r["latency"]["p99"],
                              "lost_or_late_share": r["lost_or_late_share"]} for r in ok]
        out[rate] = chosen
    return out


def bench_ros(params_file: str, rates, duration: float, warmup: float, log_root: Path, quick: bool,
              inputs: Inputs, repeat: int = 1) -> dict:
    """Run the ROS sections: our nodes on the lean loop (in full also on rclpy's executor) against two floors.

    The floors are the same-shape bare relays on rclpy's SingleThreadedExecutor and on the lean wait set.
    """
    from .graph import NodeSpec, runtime_specs

    def case(specs, final, mode, rates_, duration_, warmup_, log_dir, env=None, **kw):
        return _median_run([_run_case(specs, final, mode, rates_, duration_, warmup_, Path(f"{log_dir}_{i}"), env,
                                      inputs=inputs, **kw) for i in range(max(1, repeat))])

    def relay(name: str, kind: str, **kw):
        return _relay_spec(name, kind, inputs.joints, **kw)

    top = max(rates)
    key = f"{int(top)}hz"
    pf = params_file
    sections = {
        "hop": ("hop", "residual_mixer", lambda: [NodeSpec("residual_mixer", [pf])], "residual_mixer",
                "bare_relay", lambda: [relay("relay_hop", "hop")], "relay_hop"),
        "graph": ("graph", "three_nodes", lambda: runtime_specs(pf), "residual_mixer",
                  "relay_chain", lambda: [relay("relay_base", "base"), relay("relay_policy", "policy"),
                                          relay("relay_mixer", "mixer", stamped=True)], "relay_mixer"),
        "fused": ("graph", "residual_controller", lambda: [NodeSpec("residual_controller", [pf])],
                  "residual_controller", "bare_single_hop", lambda: [relay("relay_single", "single", stamped=True)],
                  "relay_single"),
    }
    out: dict = {}
    for section, (mode, ours, our_specs, our_final, floor, floor_specs, floor_final) in sections.items():
        at = top if section != "hop" else None
        res = {}
        for loop in LOOPS:
            if loop == "single" and quick:
                continue
            name = ours if loop == "lean" else f"{ours}_single"
            res[name] = case(our_specs(), our_final, mode, rates, duration, warmup, log_root / f"{section}_{loop}",
                             _loop_env(loop), resources_at=at)
        # the floors: the bare relay on rclpy's executor (``floor``) and on the lean wait set
        res[floor] = case(floor_specs(), floor_final, mode, rates, duration, warmup, log_root / f"{section}_floor",
                          _loop_env("single"), resources_at=at)
        res[f"{floor}_wait_set"] = case(floor_specs(), floor_final, mode, rates, duration, warmup,
                                        log_root / f"{section}_floor_lean", _loop_env("lean"), resources_at=at)
        for name in (ours, f"{ours}_single"):
            if name in res:
                _ratio(res[name], res[floor], "ratio_p50")
                _ratio(res[name], res[f"{floor}_wait_set"], "ratio_p50_wait_set")
        out[section] = res
    g, f = out["graph"], out["fused"]
    out["resources"] = {"rate_hz": top, "unit": "cpu_share: fraction of one core; rss_mib: MiB"}
    for label, r in (("three_nodes", g.get("three_nodes")), ("three_nodes_single", g.get("three_nodes_single")),
                     ("relay_chain", g.get("relay_chain")), ("relay_chain_wait_set", g.get("relay_chain_wait_set")),
                     ("fused", f.get("residual_controller")), ("fused_single", f.get("residual_controller_single")),
                     ("bare_single_hop", f.get("bare_single_hop")),
                     ("bare_single_hop_wait_set", f.get("bare_single_hop_wait_set"))):
        if r is not None:
            out["resources"][label] = r.get(key, {}).get("resources", {})
    # Loops and QoS on the hop at the top rate.
    hop = out["hop"]
    ex = {"rate_hz": top, "what": "one hop at the top rate: residual_mixer and the bare relay per loop; "
                                  "the bare relay per QoS", "executor": {}, "qos": {}}
    ex["executor"]["lean"] = {"residual_mixer": hop["residual_mixer"].get(key),
                              "bare_relay": hop["bare_relay_wait_set"].get(key)}
    if not quick:
        ex["executor"]["single"] = {"residual_mixer": hop["residual_mixer_single"].get(key),
                                    "bare_relay": hop["bare_relay"].get(key)}
        variants = [("lean_between", _loop_env("lean", "between")), ("multi", _loop_env("multi")),
                    ("events", _loop_env("events"))]
        for kind, env in variants:
            ex["executor"][kind] = {
                "residual_mixer": case([NodeSpec("residual_mixer", [pf])], "residual_mixer", "hop", [top],
                                       duration, warmup, log_root / f"ex_{kind}_mixer", env).get(key),
                "bare_relay": case([relay("relay_hop", "hop")], "relay_hop", "hop", [top], duration,
                                   warmup, log_root / f"ex_{kind}_relay", env).get(key)}
        ex["qos"]["reliable_depth1"] = hop["bare_relay"].get(key)
        for rel, depth in (("best_effort", 1), ("reliable", 10)):
            ex["qos"][f"{rel}_depth{depth}"] = case(
                [relay("relay_hop", "hop", reliability=rel, depth=depth)], "relay_hop", "hop", [top],
                duration, warmup, log_root / f"qos_{rel}_{depth}", _loop_env("single"), reliability=rel).get(key)
    out["executors"] = ex
    return out


def bench_node_step(params_file: str, inputs: Inputs, n: int = 3000) -> dict:
    """Time the fused node's Python per control period in process: a 1 kHz period's CPU besides DDS.

    A ``residual_controller`` built from the bench's params file gets, per period, a reference, a
    perception message every PERCEPTION_EVERY periods and a joint state, through the same callbacks its
    subscriptions call (no DDS, ``commands`` has no subscriber). Timed without instrumentation (per
    period), then once under cProfile for the share of each stage (cProfile inflates the total; the shares
    are what it says).
    """
    import cProfile
    import pstats

    from rclpy.parameter import Parameter, parameter_dict_from_yaml_file
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from ..nodes.residual_controller import NODE_NAME, ResidualControllerNode

    msgs = parameter_dict_from_yaml_file(params_file, target_nodes=[NODE_NAME])
    node = ResidualControllerNode(parameter_overrides=[Parameter.from_parameter_msg(m) for m in msgs.values()])
    try:
        zeros = [0.0] * len(inputs.joints)
        js = JointState(name=list(inputs.joints), position=list(inputs.q), velocity=zeros)
        ref = JointState(name=list(inputs.joints), position=list(inputs.q_ref), velocity=zeros)
        perc = Float64MultiArray(data=[0.5] * inputs.n_features)
        on_ref, on_perc = node.policy._on_reference, node.policy._on_perception

        def period(k: int) -> None:
            t = time.time_ns()
            for m in (ref, js):
                m.header.stamp.sec, m.header.stamp.nanosec = divmod(t, 1_000_000_000)
            on_ref(ref)
            if k % PERCEPTION_EVERY == 0:
                on_perc(perc)
            node._on_joint_state(js)

        for k in range(500):  # to nominal (the residual ramps in)
            period(k)
        times = np.empty(n)
        for k in range(n):
            t0 = time.perf_counter()
            period(k)
            times[k] = (time.perf_counter() - t0) * 1e6
        prof = cProfile.Profile()
        prof.enable()
        for k in range(n):
            period(k)
        prof.disable()
        stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
        total = sum(v[2] for v in stats.values())

        def cum(*where) -> float:
            return sum(v[3] for (f, _, name), v in stats.items()
                       if any(f.replace("\\", "/").endswith(suffix) and name == fn for suffix, fn in where)) / total
        stages = {
            "read joint state, reference, perception (conversions)": cum(
                ("nodes/conversions.py", "read_state"), ("nodes/conversions.py", "read_reference"),
                ("nodes/conversions.py", "read_perception")),
            "base controller compute": cum(("core/base_controllers.py", "compute")),
            "policy step (observation, inference, envelope)": cum(("core/step.py", "residual")),
            "  of which onnxruntime InferenceSession.run": cum(("onnxruntime_inference_collection.py", "run")),
            "mixer step": cum(("core/mixer.py", "step")),
            "publish (commands)": cum(("rclpy/publisher.py", "publish")),
            "node clock reads (now_sec)": cum(("nodes/conversions.py", "now_sec")),
        }
        return {"periods": n, "unit": "us per control period (reference + joint state, perception 1 in "
                                      f"{PERCEPTION_EVERY})", "mode": node.mixer.mode.value,
                "period_us": _stats(times), "profile_share": {k: round(v, 3) for k, v in stages.items()}}
    finally:
        node.destroy_node()


# ============================================================================ report
def _machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("numpy", "onnxruntime", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    info["rmw_implementation"] = os.environ.get("RMW_IMPLEMENTATION", "default (rmw_fastrtps_cpp)")
    info["ros_domain_id"] = os.environ.get("ROS_DOMAIN_ID")
    return info


def _row(name: str, s: dict, extra: str = "") -> str:
    if not isinstance(s, dict) or "p50" not in s:
        return f"{name:<58} {'n/a':>10}"
    ratio = s.get("ratio_p50")
    r = f"{ratio:6.2f}x" if ratio is not None else "      -"
    return f"{name:<58} {s['p50']:10.1f} {s['p99']:10.1f} {s['max']:10.1f} {r:>8} {extra}"


def print_table(res: dict) -> None:
    print(f"\n{'measurement (us)':<58} {'p50':>10} {'p99':>10} {'max':>10} {'vs floor':>8}")
    m = res.get("mixer_step", {})
    for n in (2, 7, 12):
        e = m.get(f"{n}_joints", {})
        print(_row(f"mixer step, {n} joints", e.get("step", {})))
        print(_row(f"  floor: np.clip, {n} values", e.get("floor_np_clip", {})))
    for label, e in res.get("inference", {}).get("models", {}).items():
        print(_row(f"infer {label}: PolicyRunner.infer (onnxruntime)", e.get("policy_runner_infer", {})))
        print(_row(f"infer {label}: torch eager", e.get("torch_eager", {})))
        print(_row("  floor: raw InferenceSession.run", e.get("raw_session_run", {})))

    titles = {"hop": ("hop base_action->residual_mixer->commands", "residual_mixer", "bare_relay", "bare relay"),
              "graph": ("graph joint_states->3 nodes->commands", "three_nodes", "relay_chain", "relay chain"),
              "fused": ("fused joint_states->residual_controller->commands", "residual_controller",
                        "bare_single_hop", "single bare hop")}
    for section, (title, ours, floor, floor_title) in titles.items():
        sec = res.get(section, {})
        for rate in sec.get(ours, {}):
            for name, label in ((ours, f"{title} [lean]"), (f"{ours}_single", f"{title} [executor]"),
                                (floor, f"  floor: {floor_title} [executor]"),
                                (f"{floor}_wait_set", f"  floor: {floor_title} [wait set]")):
                r = sec.get(name, {}).get(rate)
                if r is None:
                    continue
                extra = (f"lost/late {r.get('lost_or_late_share', float('nan')) * 100:.2f}%" if "latency" in r
                         else r.get("error", ""))
                lat = dict(r.get("latency", {}))
                if "ratio_p50_wait_set" in lat:
                    extra += f"  vs wait-set floor {lat['ratio_p50_wait_set']:.2f}x"
                ps = r.get("parameter_service")
                if ps:
                    asked = ps["answered"] + ps["unanswered"]
                    p50 = f"{ps['rtt_ms_p50']:.1f} ms" if ps["rtt_ms_p50"] is not None else "-"
                    extra += f"  get_parameters {ps['answered']}/{asked} answered, p50 {p50}"
                print(_row(f"{label} @ {rate}", lat, extra))
    ns = res.get("node_step")
    if ns:
        p = ns["period_us"]
        print(f"\nfused node, Python per control period in process (mode {ns['mode']}): p50 {p['p50']:.0f} us, "
              f"p99 {p['p99']:.0f} us; cProfile share of the period:")
        for k, v in ns["profile_share"].items():
            print(f"  {k:<58} {100 * v:5.1f} %")
    r = res.get("resources", {})
    if r:
        print(f"\nresources at {r.get('rate_hz')} Hz: CPU share of one core, RSS MiB")
        for case, procs in r.items():
            if not isinstance(procs, dict):
                continue
            for k, v in procs.items():
                threads = ", ".join(f"{t} {100 * c:.0f}%" for t, c in sorted(
                    v.get("threads_cpu_share", {}).items(), key=lambda x: -x[1]) if c >= 0.01)
                print(f"  {case:<26} {k:<22} cpu {v['cpu_share'] * 100:6.1f}%   rss {v['rss_mib']:7.1f} MiB"
                      f"   ({threads})")
    ex = res.get("executors", {})
    if ex.get("executor"):
        print(f"\nloops, hop at {ex.get('rate_hz')} Hz (p50 / p99 us, lost or late)")
        for kind, e in ex["executor"].items():
            for who, v in (e or {}).items():
                if v and "latency" in v:
                    print(f"  {kind:<8} {who:<16} {v['latency']['p50']:8.1f} {v['latency']['p99']:9.1f}  "
                          f"{v['lost_or_late_share'] * 100:6.2f}%")
                else:
                    print(f"  {kind:<8} {who:<16} failed: {(v or {}).get('error', 'no result')}")
        for q, v in ex.get("qos", {}).items():
            if v and "latency" in v:
                print(f"  relay {q:<18} {v['latency']['p50']:8.1f} {v['latency']['p99']:9.1f}  "
                      f"{v['lost_or_late_share'] * 100:6.2f}%")


def _model_joints(path: str) -> tuple:
    return _expectations_for(path)[0].joint_names


def find_models(tmp: Path, robot=None, params_file: str = "") -> dict[str, str]:
    """Return the robot's models: each shipped model (models/*.onnx) made for its joints, and its own.

    Its own: robot.yaml model.

    A synthetic MLP of the robot's contract (its params file's joints, perception features, residual
    limit, control rate) when there is none. ``robot`` None: the built-in arm.
    """
    from ..params_file import load, node_params
    from ..paths import SOURCE_ROOT
    from ..robot.folder import load_robot

    robot = robot or load_robot(None)
    paths = sorted((SOURCE_ROOT / "models").glob("*.onnx"))
    try:
        from ..paths import share_path

        paths += sorted(share_path("models").glob("*.onnx"))
    except FileNotFoundError:
        pass
    models = {}
    for p in paths:
        if p.stem not in models and _model_joints(str(p)) == tuple(robot.joints):
            models[p.stem] = str(p)
    if robot.model is not None and Path(robot.model).is_file():
        models.setdefault(Path(robot.model).stem, str(robot.model))
    if not models:
        pol = node_params(load(params_file or str(robot.params)), "residual_policy")
        models["synthetic_mlp"] = synthetic_mlp(str(tmp / "synthetic_mlp.onnx"), robot.joints,
                                                pol["perception_features"], pol["residual_limit"],
                                                float(pol["control_rate_hz"]))
    return models


def graph_model(models: dict[str, str], robot) -> str:
    """Return the model the graphs run: the robot's own, else the first of ``models``."""
    if robot.model is not None and Path(robot.model).stem in models:
        return models[Path(robot.model).stem]
    return next(iter(models.values()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .robot_args import add_robot_argument

    add_robot_argument(parser)
    parser.add_argument("--json", default="", help="Write the results as JSON to this file")
    parser.add_argument("--quick", action="store_true",
                        help="Fewer samples, 1 kHz only, no executor/QoS comparison (~1 min; for the tests)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="Seconds measured per latency run (default 8, quick 2)")
    parser.add_argument("--log-dir", default="", help="Keep the nodes' logs here (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Run each ROS case this many times (fresh processes) and report, per rate, the run "
                             "of median lost-or-late share, with every run's numbers (default 1)")


def run(args) -> int:
    from .robot_args import robot_of

    _ensure_private_ros_env()
    t_start = time.monotonic()
    try:
        robot = robot_of(args)
        if robot.params is None:
            raise ValueError(f"robot {robot.name!r} ({robot.root}): expected a params file (robot.yaml params:), "
                             "found none")
        inputs = Inputs.of(robot, str(robot.params))
    except (ValueError, FileNotFoundError) as exc:
        print(f"bench: --robot: {exc}", file=sys.stderr)
        return 2
    quick = bool(args.quick)
    duration = args.duration or (2.0 if quick else 8.0)
    warmup = 0.5 if quick else 1.0
    rates = [1000.0] if quick else [500.0, 1000.0]
    n_samples = 3000 if quick else 20000
    import rclpy

    with tempfile.TemporaryDirectory(prefix="residual_bench_") as tmpdir:
        tmp = Path(tmpdir)
        log_root = Path(args.log_dir) if args.log_dir else tmp / "logs"
        res = {"machine": _machine(), "config": {"quick": quick, "duration_s": duration, "warmup_s": warmup,
                                                 "rates_hz": rates, "samples": n_samples,
                                                 "repeat": max(1, int(getattr(args, "repeat", 1) or 1))},
               "robot": {"name": robot.name, "folder": str(robot.root), "joints": list(robot.joints),
                         "params_file": str(robot.params)}}
        print(f"bench: robot {robot.name} ({len(robot.joints)} joints), mixer step", flush=True)
        res["mixer_step"] = bench_mixer(n_samples)
        models = find_models(tmp, robot)
        print(f"bench: inference {sorted(models)}", flush=True)
        res["inference"] = bench_inference(models, n_samples // 2 if quick else n_samples // 4)
        model = graph_model(models, robot)
        contract, _ = _expectations_for(model)
        params_file = _params_file(tmp, str(robot.params), model, contract.control_rate_hz)
        res["config"]["graph_model"] = model
        print("bench: ROS graph runs", flush=True)
        rclpy.init()
        try:
            res.update(bench_ros(params_file, rates, duration, warmup, log_root, quick, inputs,
                                 repeat=max(1, int(getattr(args, "repeat", 1) or 1))))
            print("bench: the fused node's Python per period", flush=True)
            res["node_step"] = bench_node_step(params_file, inputs, 1000 if quick else 3000)
        finally:
            rclpy.try_shutdown()
    res["machine"]["load_average_at_end"] = os.getloadavg()
    res["elapsed_s"] = time.monotonic() - t_start
    print_table(res)
    print(f"\nbench finished in {res['elapsed_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=_json_default))
        print(f"wrote {args.json}")
    return 0


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        raise SystemExit(relay_main(sys.argv[2:]))
    p = argparse.ArgumentParser(prog="bench")
    add_arguments(p)
    raise SystemExit(run(p.parse_args()))
