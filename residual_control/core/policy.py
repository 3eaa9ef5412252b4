"""The ONNX policy runner and the model contract.

A residual model is one ONNX graph with one input ``observation`` (float32,
[1, n_obs]) and one output ``residual`` (float32, [1, n_joints]), bounded
inside the graph. Its ``metadata_props`` carry the contract, JSON-encoded
where not scalar:

=========================  ===================================================
key                        value
=========================  ===================================================
``joint_names``            list of joint names, the output order
``observation_names``      list of observation names (see core.observation)
``residual_limit``         list, the output bound per joint (N m)
``control_rate_hz``        number, the rate the model was trained at
``base_controller``        object, type and gains of the base controller
``training_method``        ``bc`` or ``rl``
``training_config_sha256`` hash of the training configuration
``plant_randomization``    object, the plant parameter ranges trained on
``package_version``        version of residual_control that exported it
``observation_envelope``   object (optional): per-feature training bounds,
                           ``{"names", "low", "high", "margin", "n_samples"}``
                           (see core.envelope); a model without it runs
                           without the envelope check
=========================  ===================================================

The runner checks all of this at load against the node's configuration and
refuses, with an error naming what was expected and what was found.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .envelope import Envelope, envelope_from_metadata
from .errors import ModelError, ObservationError, PolicyOutputError

INPUT_NAME = "observation"
OUTPUT_NAME = "residual"
REQUIRED_METADATA = ("joint_names", "observation_names", "residual_limit", "control_rate_hz", "base_controller")


@dataclass(frozen=True)
class ModelContract:
    joint_names: tuple[str, ...]
    observation_names: tuple[str, ...]
    residual_limit: tuple[float, ...]
    control_rate_hz: float
    base_controller: Mapping[str, object]
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str = "model") -> "ModelContract":
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise ModelError(
                f"{source}: expected metadata keys {list(REQUIRED_METADATA)}, missing {missing}")

        def load(key):
            try:
                return json.loads(meta[key])
            except (json.JSONDecodeError, TypeError):
                raise ModelError(f"{source}: metadata '{key}' expected JSON, found {meta[key]!r:.80}") from None

        joints, obs, limit = load("joint_names"), load("observation_names"), load("residual_limit")
        rate, base = load("control_rate_hz"), load("base_controller")
        if not (isinstance(joints, list) and joints and all(isinstance(j, str) for j in joints)):
            raise ModelError(f"{source}: metadata 'joint_names' expected a list of strings, found {joints!r:.80}")
        if not (isinstance(obs, list) and obs and all(isinstance(o, str) for o in obs)):
            raise ModelError(
                f"{source}: metadata 'observation_names' expected a list of strings, found {obs!r:.80}")
        if not (isinstance(limit, list) and len(limit) == len(joints)
                and all(isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in limit)):
            raise ModelError(
                f"{source}: metadata 'residual_limit' expected {len(joints)} finite numbers >= 0, "
                f"found {limit!r:.80}")
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ModelError(f"{source}: metadata 'control_rate_hz' expected a number > 0, found {rate!r:.40}")
        if not isinstance(base, dict) or "type" not in base:
            raise ModelError(f"{source}: metadata 'base_controller' expected an object with 'type', found {base!r:.80}")
        extra = {k: v for k, v in meta.items() if k not in REQUIRED_METADATA}
        return cls(tuple(joints), tuple(obs), tuple(float(x) for x in limit), float(rate), base, extra)

    def to_metadata(self) -> dict[str, str]:
        meta = dict(self.extra)
        meta.update({
            "joint_names": json.dumps(list(self.joint_names)),
            "observation_names": json.dumps(list(self.observation_names)),
            "residual_limit": json.dumps(list(self.residual_limit)),
            "control_rate_hz": json.dumps(self.control_rate_hz),
            "base_controller": json.dumps(self.base_controller, sort_keys=True),
        })
        return meta


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class PolicyExpectations:
    """What the node's configuration requires of a model."""

    joints: Sequence[str]
    residual_limit: Sequence[float]
    control_rate_hz: float
    perception_features: Sequence[str] = ()
    base_controller_type: str | None = None
    rate_tolerance: float = 0.01


def make_session(path: str):
    """Return an onnxruntime session for one-observation control: one thread, no spinning."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


class PolicyRunner:
    """Loads, validates and runs one residual model.

    ``infer(obs)`` returns the residual ordered by ``contract.joint_names``;
    it raises ObservationError for a bad observation and PolicyOutputError
    for a non-finite or out-of-bound output, so nothing bad is passed on.
    """

    def __init__(self, path: str, expect: PolicyExpectations, sha256: str = "") -> None:
        self.path = path
        if not path or not os.path.isfile(path):
            raise ModelError(f"model_path: expected an ONNX file, found no file at {path!r}")
        digest = sha256_of(path)
        if sha256 and digest.lower() != sha256.strip().lower():
            raise ModelError(f"model_sha256: expected {sha256.strip().lower()}, found {digest} for {path}")
        self.sha256 = digest
        try:
            self._session = make_session(path)
        except Exception as exc:  # onnxruntime raises its own types for corrupt files
            raise ModelError(f"{path}: expected a valid ONNX model, found a file onnxruntime cannot load "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(meta, source=path)
        self._check_io()
        self._check_contract(expect)
        #: The training envelope of the observations (None: the model declares none).
        self.envelope: Envelope | None = envelope_from_metadata(meta, self.contract.observation_names, path)
        self._bound = np.asarray(self.contract.residual_limit, dtype=np.float32)
        self._feed = {INPUT_NAME: np.zeros((1, self.n_obs), dtype=np.float32)}
        self._outputs = [OUTPUT_NAME]

    # ------------------------------------------------------------------ checks
    def _check_io(self) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        found_in = [(i.name, i.shape, i.type) for i in inputs]
        found_out = [(o.name, o.shape, o.type) for o in outputs]
        n_obs, n_act = len(self.contract.observation_names), len(self.contract.joint_names)
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(float)":
            raise ModelError(f"{self.path}: expected one float input '{INPUT_NAME}', found {found_in}")
        if len(outputs) != 1 or outputs[0].name != OUTPUT_NAME or outputs[0].type != "tensor(float)":
            raise ModelError(f"{self.path}: expected one float output '{OUTPUT_NAME}', found {found_out}")
        for what, shape, n in (("input", inputs[0].shape, n_obs), ("output", outputs[0].shape, n_act)):
            if len(shape) != 2 or shape[1] != n or (isinstance(shape[0], int) and shape[0] != 1):
                raise ModelError(f"{self.path}: expected {what} shape [1, {n}] (from the metadata), found {shape}")
        self.n_obs, self.n_act = n_obs, n_act

    def _check_contract(self, expect: PolicyExpectations) -> None:
        c = self.contract
        if sorted(c.joint_names) != sorted(expect.joints):
            raise ModelError(f"{self.path}: expected joints {list(expect.joints)}, found {list(c.joint_names)}")
        if len(c.residual_limit) != len(c.joint_names):
            raise ModelError(f"{self.path}: expected residual_limit with {len(c.joint_names)} values (one per joint "
                             f"of the model), found {len(c.residual_limit)}")
        if len(expect.residual_limit) != len(expect.joints):
            raise ModelError(f"residual_limit: expected {len(expect.joints)} values (one per joint), found "
                             f"{len(expect.residual_limit)}")
        limit = dict(zip(c.joint_names, c.residual_limit))
        wanted = dict(zip(expect.joints, expect.residual_limit))
        if len(wanted) != len(expect.joints) or any(abs(limit[j] - wanted[j]) > 1e-6 for j in expect.joints):
            raise ModelError(
                f"{self.path}: expected residual_limit {[wanted.get(j) for j in expect.joints]} for "
                f"{list(expect.joints)}, found {[limit[j] for j in expect.joints]}")
        if abs(c.control_rate_hz - expect.control_rate_hz) > expect.rate_tolerance * expect.control_rate_hz:
            raise ModelError(
                f"{self.path}: expected control_rate_hz {expect.control_rate_hz:g}, found {c.control_rate_hz:g}")
        if expect.base_controller_type is not None and c.base_controller.get("type") != expect.base_controller_type:
            raise ModelError(
                f"{self.path}: expected base_controller type {expect.base_controller_type!r}, "
                f"found {c.base_controller.get('type')!r}")
        # Observation names must be assemblable from what the node has.
        from .observation import ObservationAssembler

        try:
            ObservationAssembler(c.observation_names, expect.joints, expect.perception_features)
        except ObservationError as exc:
            raise ModelError(f"{self.path}: {exc}") from None

    # ------------------------------------------------------------------ run
    def infer(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32).reshape(-1)
        if obs.size != self.n_obs:
            raise ObservationError(f"observation: expected {self.n_obs} values, found {obs.size}")
        if not np.isfinite(obs).all():
            raise ObservationError("observation: expected finite values, found non-finite entries")
        buf = self._feed[INPUT_NAME]
        buf[0, :] = obs
        out = self._session.run(self._outputs, self._feed)[0].reshape(-1)
        if out.size != self.n_act or not np.isfinite(out).all():
            raise PolicyOutputError(f"residual: expected {self.n_act} finite values, found {out.tolist()}")
        if np.any(np.abs(out) > self._bound * (1 + 1e-5) + 1e-6):
            raise PolicyOutputError(
                f"residual: expected |value| <= {self._bound.tolist()} (model bound), found {out.tolist()}")
        return out.astype(float)
