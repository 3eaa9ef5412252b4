"""ONNX writer for :class:`ResidualPolicyNet` (and :class:`ResidualEnsemble`) plus the export check.

The graph is built node by node with ``onnx.helper`` from the trained weights
(Sub, Div, Clip, Gemm, Relu/Tanh/Elu, Tanh, Mul, Max/Min), so it does not depend on the
torch exporter in use and holds exactly the computation of the torch module:
input ``observation`` float32 [1, n_obs], output ``residual`` float32
[1, n_joints], normalisation and bound inside the graph.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from residual_control.core.policy import INPUT_NAME, OUTPUT_NAME, ModelContract

from .nets import ResidualEnsemble, ResidualPolicyNet

OPSET = 17
EXPORT_TOLERANCE = 1e-5


class ExportCheckError(RuntimeError):
    pass


def build_onnx(net: ResidualPolicyNet | ResidualEnsemble, metadata: Mapping[str, str], opset: int = OPSET):
    """Return the ONNX model of ``net``: one network, or an ensemble's members and the Mean of their outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net = net.eval()
    n_obs = net.n_obs
    n_act = int(net.limit.numel())
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    if isinstance(net, ResidualEnsemble):
        outs = [_member(m, f"m{i}_", f"m{i}_residual", const, nodes) for i, m in enumerate(net.members)]
        limit = const("residual_limit", net.limit.detach().numpy().reshape(1, -1))
        neg_limit = const("neg_residual_limit", -net.limit.detach().numpy().reshape(1, -1))
        nodes += [helper.make_node("Mean", outs, ["mean_residual"]),
                  helper.make_node("Max", ["mean_residual", neg_limit], ["mean_lower_bounded"]),
                  helper.make_node("Min", ["mean_lower_bounded", limit], [OUTPUT_NAME])]
    else:
        _member(net, "", OUTPUT_NAME, const, nodes)
    graph = helper.make_graph(
        nodes, "residual_policy",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, n_obs])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, n_act])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name="residual_control.training")
    model.ir_version = min(model.ir_version, 8)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(model)
    return model


def _member(net: ResidualPolicyNet, prefix: str, output: str, const, nodes: list) -> str:
    """Append one network's nodes (names ``prefix``-ed) from the input to ``output``; return ``output``."""
    from onnx import helper

    p = prefix
    mean = const(f"{p}obs_mean", net.normalizer.mean.detach().numpy().reshape(1, -1))
    std = const(f"{p}obs_std", net.normalizer.std.detach().numpy().reshape(1, -1))
    lo = const(f"{p}obs_clip_lo", np.float32(-net.normalizer.clip))
    hi = const(f"{p}obs_clip_hi", np.float32(net.normalizer.clip))
    nodes += [helper.make_node("Sub", [INPUT_NAME, mean], [f"{p}centred"]),
              helper.make_node("Div", [f"{p}centred", std], [f"{p}scaled"]),
              helper.make_node("Clip", [f"{p}scaled", lo, hi], [f"{p}x0"])]
    x = f"{p}x0"
    k = 0
    for layer in net.body:
        k += 1
        out = f"{p}x{k}"
        if isinstance(layer, nn.Linear):
            w = const(f"{p}W{k}", layer.weight.detach().numpy())
            b = const(f"{p}b{k}", layer.bias.detach().numpy())
            nodes.append(helper.make_node("Gemm", [x, w, b], [out], transB=1))
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [x], [out]))
        elif isinstance(layer, nn.Tanh):
            nodes.append(helper.make_node("Tanh", [x], [out]))
        elif isinstance(layer, nn.ELU):
            nodes.append(helper.make_node("Elu", [x], [out], alpha=float(layer.alpha)))
        else:
            raise TypeError(f"build_onnx: unsupported layer {type(layer).__name__}")
        x = out
    limit = const(f"{p}residual_limit", net.limit.detach().numpy().reshape(1, -1))
    neg_limit = const(f"{p}neg_residual_limit", -net.limit.detach().numpy().reshape(1, -1))
    nodes += [helper.make_node("Tanh", [x], [f"{p}unit"]),
              helper.make_node("Mul", [f"{p}unit", limit], [f"{p}scaled_residual"]),
              helper.make_node("Max", [f"{p}scaled_residual", neg_limit], [f"{p}lower_bounded"]),
              helper.make_node("Min", [f"{p}lower_bounded", limit], [output])]
    return output


def export_check(net: ResidualPolicyNet, model_bytes: bytes, real_obs: np.ndarray | None = None,
                 n_random: int = 256, seed: int = 0, tol: float = EXPORT_TOLERANCE) -> dict:
    """Run torch and onnxruntime on the same random and real observations; raise if they differ."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    mean = net.normalizer.mean.numpy()
    std = net.normalizer.std.numpy()
    batches = [(mean + std * rng.normal(0, 2.0, (n_random, net.n_obs))).astype(np.float32),
               rng.normal(0, 1e3, (16, net.n_obs)).astype(np.float32)]
    if real_obs is not None and len(real_obs):
        batches.append(np.asarray(real_obs, dtype=np.float32).reshape(-1, net.n_obs))
    obs = np.concatenate(batches)
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net(torch.as_tensor(obs)).numpy()
    got = np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: o[None, :]})[0] for o in obs])
    diff = float(np.max(np.abs(ref - got)))
    # Relative to the output's scale (the bound, N m): float32 rounding of a residual near 20 N m is ~2e-6
    # per operation, and inputs at the normaliser's clip make large pre-activations that cancel.
    tol = tol * max(1.0, float(net.limit.abs().max()) / 4.0)
    if not np.isfinite(diff) or diff > tol:
        raise ExportCheckError(f"export check: expected torch vs onnxruntime max |diff| <= {tol:g}, "
                               f"found {diff:.3g} over {len(obs)} observations")
    return {"n_checked": int(len(obs)), "n_real": int(0 if real_obs is None else len(real_obs)),
            "max_abs_diff": diff}


def write_model(net: ResidualPolicyNet, contract: ModelContract, path: str, real_obs=None,
                opset: int = OPSET) -> dict:
    """Build, check (torch vs onnxruntime) and only then write the model. Returns the check report."""
    from pathlib import Path

    model = build_onnx(net, contract.to_metadata(), opset)
    data = model.SerializeToString()
    report = export_check(net, data, real_obs)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return report
