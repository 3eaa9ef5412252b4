"""Export a trained checkpoint to the runtime's ONNX contract, check it, prove the runtime accepts it.

Steps (:func:`export_checkpoint`):

1. rebuild the :class:`ResidualPolicyNet` (normaliser + MLP + tanh * residual_limit);
2. metadata: ``ModelContract(...).to_metadata()`` (joint_names, observation_names,
   residual_limit, control_rate_hz, base_controller) plus ``training_method``,
   ``training_config_sha256``, ``plant_randomization`` (JSON), ``package_version``,
   ``opset``, ``bags`` and ``finetune`` (JSON: the logs' SHA-256 and the method, for a model fine-tuned
   from logs, training/finetune.py), and ``observation_envelope`` (the training observations' per-feature bounds
   with a margin, see core.envelope) when the checkpoint has one (an older checkpoint without
   it exports with a warning: the runtime then runs that model without the envelope check);
3. export check: torch and onnxruntime on the same random and real observations,
   max |diff| <= 1e-5 x max(1, bound / 4 N m) (float32 rounding scales with the output), else nothing is written;
4. load the written file with the runtime's PolicyRunner and PolicyExpectations
   built from config/residual_control.yaml (the file is removed if refused).
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np

import residual_control
from residual_control.core.envelope import METADATA_KEY as ENVELOPE_KEY, Envelope
from residual_control.core.errors import ModelError
from residual_control.core.observation import LOWPASS_METADATA_KEY
from residual_control.core.policy import ModelContract, PolicyExpectations, PolicyRunner

from .common.config import load_params_file
from .common.nets import load_checkpoint
from .common.onnx_export import OPSET, write_model


def expectations_from_params(params_file: str = "config/residual_control.yaml") -> PolicyExpectations:
    pf = load_params_file(params_file)
    return PolicyExpectations(joints=pf["joints"], residual_limit=pf["residual_limit"],
                              control_rate_hz=pf["control_rate_hz"],
                              perception_features=pf["perception_features"],
                              base_controller_type=pf["base_params"].get("controller_type", "pd_gravity"))


def contract_from_meta(meta: dict, opset: int = OPSET) -> ModelContract:
    extra = {
        "training_method": str(meta["training_method"]),
        "training_config_sha256": str(meta["training_config_sha256"]),
        "plant_randomization": json.dumps(meta["plant_randomization"], sort_keys=True),
        "package_version": residual_control.__version__,
        "opset": str(int(opset)),
        "residual_delay_steps": str(int(meta.get("residual_delay_steps", 1))),
        "seed": str(meta.get("seed", "")),
        "network": json.dumps(meta.get("network", {}), sort_keys=True),
    }
    if float(meta.get("observation_lowpass_hz") or 0.0) > 0.0:  # the runtime filters the observation the same way
        extra[LOWPASS_METADATA_KEY] = repr(float(meta["observation_lowpass_hz"]))
    # Fine-tuning from logs (training/finetune.py): the logs' SHA-256 and the method.
    for key in ("bags", "finetune"):
        if meta.get(key) is not None:
            extra[key] = json.dumps(meta[key], sort_keys=True, default=float)
    if meta.get("observation_envelope") is not None:
        env = Envelope.from_json(json.dumps(meta["observation_envelope"]), "checkpoint")
        if tuple(env.names) != tuple(meta["observation_names"]):
            raise ModelError(f"checkpoint: observation_envelope expected the features "
                             f"{list(meta['observation_names'])}, found {list(env.names)}")
        extra[ENVELOPE_KEY] = env.to_json()
    return ModelContract(tuple(meta["joint_names"]), tuple(meta["observation_names"]),
                         tuple(float(x) for x in meta["residual_limit"]), float(meta["control_rate_hz"]),
                         dict(meta["base_controller"]), extra)


def export_checkpoint(checkpoint: str, out_path: str, params_file: str | None = None,
                      opset: int = OPSET) -> dict:
    net, meta = load_checkpoint(checkpoint)
    contract = contract_from_meta(meta, opset)
    if ENVELOPE_KEY not in contract.extra:
        warnings.warn(f"{checkpoint}: no observation_envelope in the checkpoint (trained before it was recorded): "
                      f"the model is exported without one; retrain to record it", stacklevel=2)
    real_obs = np.asarray(meta.get("real_observations", []), dtype=np.float32)
    report = write_model(net, contract, out_path, real_obs if real_obs.size else None, opset)
    params_file = params_file or meta.get("params_file", "config/residual_control.yaml")
    try:
        runner = PolicyRunner(str(out_path), expectations_from_params(params_file))
    except Exception:
        os.remove(out_path)
        raise
    report.update({"path": str(out_path), "sha256": runner.sha256, "opset": opset,
                   "runtime_accepted": True, "n_obs": runner.n_obs, "n_act": runner.n_act,
                   "envelope": runner.envelope is not None})
    return report
