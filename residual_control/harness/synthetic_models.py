"""Small ONNX residual models built directly with onnx.helper, for tests and fault injection.

These are fixtures with a known closed form (da = clip(W obs + b) or a
constant), never shipped: the models in models/ come from the training
commands. Each carries the same metadata contract as a trained model.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from ..core.policy import INPUT_NAME, OUTPUT_NAME, ModelContract


def linear_model(path: str, joints: Sequence[str], observation_names: Sequence[str],
                 residual_limit: Sequence[float], weights: np.ndarray | None = None,
                 bias: Sequence[float] | None = None, control_rate_hz: float = 100.0,
                 bounded: bool = True, n_obs: int | None = None, n_out: int | None = None,
                 extra_metadata: dict | None = None, opset: int = 17) -> str:
    """Write da = clip(obs @ W + b, -limit, limit) (or unbounded) with the contract metadata.

    ``n_obs``/``n_out`` override the graph's shapes to build mismatching models.
    """
    import onnx
    from onnx import TensorProto, helper

    n_obs = len(observation_names) if n_obs is None else n_obs
    n_out = len(joints) if n_out is None else n_out
    w = np.zeros((n_obs, n_out), np.float32) if weights is None else np.asarray(weights, np.float32)
    b = np.zeros(n_out, np.float32) if bias is None else np.asarray(bias, np.float32)
    lim = np.resize(np.asarray(residual_limit, np.float32), n_out)
    inits = [helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.flatten()),
             helper.make_tensor("B", TensorProto.FLOAT, b.shape, b),
             helper.make_tensor("LO", TensorProto.FLOAT, lim.shape, -lim),
             helper.make_tensor("HI", TensorProto.FLOAT, lim.shape, lim)]
    nodes = [helper.make_node("MatMul", [INPUT_NAME, "W"], ["xw"]),
             helper.make_node("Add", ["xw", "B"], ["raw" if bounded else OUTPUT_NAME])]
    if bounded:
        nodes += [helper.make_node("Max", ["raw", "LO"], ["lo_clipped"]),
                  helper.make_node("Min", ["lo_clipped", "HI"], [OUTPUT_NAME])]
    graph = helper.make_graph(
        nodes, "synthetic_residual",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, n_obs])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, n_out])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    contract = ModelContract(tuple(joints), tuple(observation_names), tuple(float(x) for x in residual_limit),
                             float(control_rate_hz), {"type": "pd_gravity"},
                             {"training_method": "synthetic", "opset": str(opset)})
    meta = contract.to_metadata()
    meta.update(extra_metadata or {})
    for k, v in meta.items():
        if v is None:
            continue
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    onnx.save(model, path)
    return path


def constant_model(path: str, joints, observation_names, residual_limit, value: Sequence[float], **kw) -> str:
    """Write da = value for every observation (clipped to the bound unless bounded=False)."""
    return linear_model(path, joints, observation_names, residual_limit, bias=value, **kw)
