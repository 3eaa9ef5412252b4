"""Training configuration: YAML loading, defaults, and a stable SHA-256 of the effective config."""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml


def repo_root() -> Path:
    """The package's source root (…/residual_control/..)."""
    return Path(__file__).resolve().parents[3]


def resolve_path(path: str | Path) -> Path:
    """A path as given if it exists, else relative to the repository / package root."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    for candidate in (repo_root() / p, repo_root() / "config" / p, repo_root() / "config" / "plants" / p):
        if candidate.exists():
            return candidate
    try:  # installed package: share/residual_control
        from residual_control.sim import resolve_config_file

        return Path(resolve_config_file(str(path)))
    except Exception:
        return p


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        return float(repr(obj)) if obj == obj else "nan"
    return obj


def config_sha256(cfg: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a config mapping (key order does not matter)."""
    text = json.dumps(_canonical(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def deep_update(base: dict, override: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_params_file(path: str | Path = "config/residual_control.yaml") -> dict:
    """The pieces of the ROS 2 params file the training needs.

    Returns ``{"joints", "base_params" (flat, for make_base_controller),
    "residual_limit", "control_rate_hz", "perception_features",
    "command_min", "command_max", "mixer_params"}``.
    """
    p = resolve_path(path)
    with open(p, "r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}

    def section(name):
        return dict((data.get(name) or {}).get("ros__parameters") or {})

    common = section("/**")
    joints = list(common.get("joints") or section("base_controller").get("joints") or [])
    base = section("base_controller")
    base.setdefault("joints", joints)
    policy = section("residual_policy")
    mixer = section("residual_mixer")
    mixer.setdefault("joints", joints)
    return {
        "path": str(p),
        "joints": joints,
        "base_params": base,
        "residual_limit": [float(x) for x in policy.get("residual_limit", mixer.get("residual_limit"))],
        "control_rate_hz": float(policy.get("control_rate_hz", 100.0)),
        "perception_features": list(policy.get("perception_features", [])),
        "command_min": [float(x) for x in mixer.get("command_min", base.get("command_min"))],
        "command_max": [float(x) for x in mixer.get("command_max", base.get("command_max"))],
        "mixer_params": mixer,
    }


@dataclass
class TrainConfig:
    """A loaded training config: the raw mapping, where it came from, and its hash."""

    data: dict
    path: str
    sha256: str

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)


def load_train_config(path: str | Path, overrides: Mapping | None = None) -> TrainConfig:
    p = resolve_path(path)
    with open(p, "r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if overrides:
        data = deep_update(data, overrides)
    return TrainConfig(data=data, path=str(p), sha256=config_sha256(data))
