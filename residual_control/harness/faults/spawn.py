"""The ``spawn`` part of the model scenarios.

Single residual_policy processes started with a bad model, which must refuse to start (exit 2,
naming expected and found).
"""
from __future__ import annotations

import subprocess
import time

from .common import RELAY_RATE_HZ, Context


# ---------------------------------------------------------------------- models
BAD_MODELS = {
    "model_corrupt": ("corrupt", "", "a corrupt ONNX file (garbage bytes)"),
    "model_truncated": ("truncated", "", "a truncated ONNX file (first half of a valid model)"),
    "model_shape_mismatch": ("shape", "", "input shape [1, n+3] not matching the metadata's observation names"),
    "model_metadata_mismatch": ("metadata", "", "metadata residual_limit twice the configured one"),
    "model_sha256_mismatch": ("good", "0" * 64, "a valid model with a model_sha256 pin that does not match"),
}


def _start_refusals(ctx: Context, label: str, timeout: float = 90.0) -> dict:
    """Start one residual_policy per bad model, all at once; they must exit 2 naming expected/found.

    Returns once every one of them has exited (or ``timeout``), before the graph under test starts.
    On Kilted (Fast DDS 3.2), participants that join and leave while the graph's participants are
    still discovering each other left single writer -> reader links of the graph unformed: every
    node and endpoint visible in the ROS graph, yet no data on that one link (the probe's view while
    stuck), so the graph never came up. With the refusals starting beside the graph, 6 of 14
    start-ups failed on this machine; with them finished first, 0 of 8 (docs/reliability.md).
    The refusals are judged from their exit status and log either way.
    """
    from ..graph import Graph, NodeSpec

    specs = []
    for name, (key, sha, _) in BAD_MODELS.items():
        specs.append(NodeSpec("residual_policy", [ctx.relay_params],
                              {"model_path": ctx.relay_models[key], "model_sha256": sha,
                               "control_rate_hz": RELAY_RATE_HZ}, name=f"refuse_{name}"))
    graph = Graph(specs, log_dir=ctx.logs(label, "start_refusals"))
    deadline = time.monotonic() + timeout
    for proc in graph.processes.values():
        try:
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass  # judged by _start_refusal_result: still running is a failed refusal
    return {"graph": graph, "results": {}}


def _start_refusal_result(pending: dict, name: str, timeout: float = 90.0) -> tuple[bool, str]:
    proc = pending["graph"][f"refuse_{name}"]
    try:
        rc = proc.popen.wait(timeout=timeout)
    except Exception:
        return False, f"still running after {timeout} s (expected exit status 2)"
    out = proc.output()
    line = next((ln for ln in out.splitlines() if "[FATAL]" in ln), "")
    if rc != 2:
        return False, f"exit status {rc}, expected 2; log tail {out[-300:]!r}"
    if "expected" not in line or "found" not in line:
        return False, f"message does not name expected/found: {line!r}"
    return True, line
