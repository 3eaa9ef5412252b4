"""Training configuration: typed configs (defaults = the shipped YAML's), one strict loader, a stable SHA-256."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Mapping, Union, get_args, get_origin, get_type_hints

import yaml

from residual_control.core.errors import ConfigError, describe
from residual_control import params_file
from residual_control.paths import SOURCE_ROOT, resolve_file


def repo_root() -> Path:
    """Return the package's source root (…/residual_control/..)."""
    return SOURCE_ROOT


def resolve_path(path: str | Path) -> Path:
    """Return a path as given if it exists, else in the package (paths.resolve_file); as given when neither."""
    try:
        return resolve_file(path)
    except FileNotFoundError:
        return Path(path).expanduser()


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        return float(repr(obj)) if obj == obj else "nan"
    return obj


#: Keys added to the training configs after models were shipped, with the value that leaves the training as it
#: was: left out of the hash at that value, so a config written before the key existed keeps its hash (and the
#: ``training_config_sha256`` a shipped model records stays that of its config).
HASH_NEUTRAL: dict[tuple[str, ...], Any] = {("bc", "smoothness_weight"): 0.0, ("rl", "init_from"): "",
                                              ("rl", "anchor_weight"): 0.0, ("rl", "rate_weight"): 0.0,
                                              ("env", "reference_acceleration"): False,
                                              ("env", "observation_lowpass_hz"): 0.0,
                                              ("bc", "expert", "rigid_body_at"): "measured",
                                              ("bc", "students"): 1, ("bc", "distill"): False,
                                              ("bc", "distill_episodes"): 0}


def _without_neutral(cfg: Mapping[str, Any]) -> dict:
    out = dict(cfg)
    for path, value in HASH_NEUTRAL.items():
        node = out
        for key in path[:-1]:
            if not isinstance(node.get(key), Mapping):
                node = None
                break
            node[key] = node = dict(node[key])
        if node is not None and path[-1] in node and node[path[-1]] == value:
            del node[path[-1]]
    return out


def config_sha256(cfg: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a config mapping.

    Key order does not matter; a :data:`HASH_NEUTRAL` key at its neutral value is left out.
    """
    text = json.dumps(_canonical(_without_neutral(cfg)), sort_keys=True, separators=(",", ":"))
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
    """Return the pieces of the ROS 2 params file the training needs.

    Returns ``{"joints", "base_params" (flat, for make_base_controller),
    "residual_limit", "control_rate_hz", "perception_features",
    "command_min", "command_max", "mixer_params"}``.
    """
    p = resolve_path(path)
    data = params_file.load(p)

    base = params_file.node_params(data, "base_controller")
    policy = params_file.node_params(data, "residual_policy")
    mixer = params_file.node_params(data, "residual_mixer")
    joints = list(mixer.get("joints") or base.get("joints") or [])
    base.setdefault("joints", joints)
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


# ---------------------------------------------------------------- typed training configs
# One dataclass per section of config/train_bc.yaml and config/train_rl.yaml. Their defaults are the
# shipped YAML's values (test_training_config checks that they are equal), so a key left out of a config
# file means what the documented training commands used.


def _at_least(section, **bounds) -> None:
    """Refuse a field below its lower bound (ConfigError naming the field, the bound and the value)."""
    for name, low in bounds.items():
        value = getattr(section, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
            raise ConfigError(f"{name}: expected a value >= {low}, found {value}")


@dataclass(frozen=True)
class EnvConfig:
    """``env``: the ResidualEnv of the training (see training/env.py)."""

    residual_delay_steps: int = 1          # the residual is mixed with the NEXT base action
    episode_seconds: float = 4.0
    base_gain_randomization: float = 0.0   # +- relative kp/kd randomization (0: the params file's gains)
    perception_noise_std: float = 0.05     # kg, on payload_mass
    perception_rate_hz: float = 30.0
    error_scale: float = 0.1
    action_weight: float = 0.05
    #: Overrides of the robot's randomization (robot.yaml; empty: the robot's).
    randomization: dict[str, tuple[float, ...]] = field(default_factory=dict)
    #: The reference acceleration (``qdd_ref/<joint>``) in the observation (core.step.ReferenceAcceleration).
    reference_acceleration: bool = False
    #: The observation through a first-order low-pass of this cut-off (Hz; 0: none), in training and in the
    #: runtime (the model declares it: core.observation.ObservationLowpass).
    observation_lowpass_hz: float = 0.0

    def __post_init__(self) -> None:
        _at_least(self, residual_delay_steps=0, episode_seconds=0.01, base_gain_randomization=0.0,
                  perception_noise_std=0.0, perception_rate_hz=0.01, error_scale=1e-9, action_weight=0.0,
                  observation_lowpass_hz=0.0)


@dataclass(frozen=True)
class EvaluationConfig:
    """``evaluation``: the plant-direct closed-loop evaluation after training."""

    reference: str = "config/reference.yaml"
    seconds: float = 20.0


@dataclass(frozen=True)
class NetworkConfig:
    """``network`` of BC: the residual MLP (= the exported network)."""

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"


@dataclass(frozen=True)
class ExpertConfig:
    """``bc.expert``: the privileged computed-torque expert (training/bc.py)."""

    extra_kp: tuple[float, ...] = (50.0, 50.0)
    extra_kd: tuple[float, ...] = (10.0, 10.0)
    friction_v0: float = 0.05
    #: Where the expert evaluates its rigid-body terms: "measured" (the measured state carried one period
    #: ahead) or "reference" (the reference's position and velocity: the inverse dynamics along the
    #: reference, noise-free; the feedback on the measured state as M(q_ref) (extra_kp e + extra_kd ed)).
    rigid_body_at: str = "measured"

    def __post_init__(self) -> None:
        if self.rigid_body_at not in ("measured", "reference"):
            raise ConfigError(f"rigid_body_at: expected 'measured' or 'reference', found {self.rigid_body_at!r}")


@dataclass(frozen=True)
class BCConfig:
    """``bc``: behaviour cloning + DAgger."""

    episodes: int = 100                # randomized-plant rollouts in all, split evenly over the rounds
    dagger_rounds: int = 4             # rounds of (roll out, label every state with the expert, refit)
    beta0: float = 0.5                 # round r > 0 rolls the expert out in a share beta0**r of its episodes
    noise_std: float = 0.1             # Gaussian noise on the executed residual, in units of its bound
    epochs: int = 30                   # passes over the aggregated data per round
    lr: float = 0.001                  # Adam learning rate
    batch_size: int = 256
    weight_decay: float = 0.0          # Adam L2 penalty
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    table_episodes: tuple[int, ...] = (10, 30, 100)  # learn-bench's BC table
    #: Weight of the temporal smoothness term of the imitation loss (0: off): the mean squared change of the
    #: student's unit action between consecutive states of the same episode (training/bc.py ``fit``). One
    #: number for every joint, or one per joint in the robot's joint order.
    smoothness_weight: float | tuple[float, ...] = 0.0
    #: Students trained apart (seeds seed, seed + 1, ...; each its own DAgger run) whose outputs the model
    #: averages (nets.ResidualEnsemble, one ONNX graph); 1: one network.
    students: int = 1
    #: With ``students`` >= 2: the model is one more student, trained by DAgger with the students' average as
    #: its expert (distilled: one network, as smooth as the average; training/bc.py), instead of the average.
    distill: bool = False
    #: DAgger episodes of the distilled student (0: ``episodes``); more data brings it closer to the average.
    distill_episodes: int = 0

    def __post_init__(self) -> None:
        _at_least(self, episodes=1, dagger_rounds=1, beta0=0.0, noise_std=0.0, epochs=1, lr=0.0, batch_size=1,
                  weight_decay=0.0, smoothness_weight=0.0, students=1, distill_episodes=0)
        if self.distill and self.students < 2:
            raise ConfigError(f"distill: expected students >= 2 to distil from, found students {self.students}")
        if isinstance(self.smoothness_weight, tuple):
            if not self.smoothness_weight or min(self.smoothness_weight) < 0.0:
                raise ConfigError(f"smoothness_weight: expected one number >= 0.0 or a non-empty list of them "
                                  f"(one per joint), found {list(self.smoothness_weight)}")


@dataclass(frozen=True)
class EnvelopeConfig:
    """``envelope``: the observation envelope recorded in the model (core.envelope)."""

    margin: float = 0.1                # fraction of each feature's range added on both sides
    base_alone_episodes: int = 50      # + base-alone rollouts (the states a fallback recovers from)

    def __post_init__(self) -> None:
        _at_least(self, margin=0.0, base_alone_episodes=0)


@dataclass(frozen=True)
class _CommandConfig:
    """The keys every training command's config starts with (its own sections follow)."""

    params_file: str = "config/residual_control.yaml"
    seed: int = 0
    torch_threads: int = 1
    env: EnvConfig = field(default_factory=EnvConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


@dataclass(frozen=True)
class BCTrainConfig(_CommandConfig):
    """config/train_bc.yaml: ``residual-control train bc``."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    envelope: EnvelopeConfig = field(default_factory=EnvelopeConfig)


@dataclass(frozen=True)
class ActorNetworkConfig:
    """``network`` of RL: the SAC actor's hidden layers (= the exported network, ReLU)."""

    hidden: tuple[int, ...] = (64, 64)


@dataclass(frozen=True)
class RLConfig:
    """``rl``: residual SAC and the from-scratch SAC baseline (training/rl.py)."""

    total_steps: int = 15000
    learning_starts: int = 2000
    actor_freeze_steps: int = 1000     # critic-only gradient steps at the start (residual only)
    warmup_from_policy: bool = True    # warm-up actions: zero residual + small Gaussian noise
    init_log_std: float = -2.0
    lr: float = 0.0003
    batch_size: int = 128
    buffer_size: int = 200000
    gamma: float = 0.98
    tau: float = 0.005
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: str | float = "auto"
    critic_hidden: tuple[int, ...] = (128, 128)
    stats_episodes: int = 5
    eval_episodes: int = 4
    eval_every: int = 1500
    init_from: str = ""                # residual only: start the actor as this imitation residual (.onnx/.pt)
    anchor_weight: float = 0.0         # with init_from: actor loss + w * mean|Q| * |pi - pi_init|^2 (TD3+BC-style)
    rate_weight: float = 0.0           # residual only: reward - w * |delta command / residual_limit|^2 per period

    def __post_init__(self) -> None:
        _at_least(self, total_steps=0, learning_starts=0, actor_freeze_steps=0, lr=0.0, batch_size=1, buffer_size=1,
                  tau=0.0, gamma=0.0, train_freq=1, gradient_steps=1, stats_episodes=1, eval_episodes=1, eval_every=1,
                  anchor_weight=0.0, rate_weight=0.0)


@dataclass(frozen=True)
class BenchmarkConfig:
    """``benchmark``: learn-bench's residual vs from-scratch budget."""

    total_steps: int = 15000


@dataclass(frozen=True)
class RLTrainConfig(_CommandConfig):
    """config/train_rl.yaml: ``residual-control train rl`` and ``learn-bench``."""

    network: ActorNetworkConfig = field(default_factory=ActorNetworkConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)


#: The training commands and the config each reads.
TRAIN_CONFIGS: dict[str, type] = {"bc": BCTrainConfig, "rl": RLTrainConfig}

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_name(tp) -> str:
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"a list of {_type_name(args[0]).replace('an ', '').replace('a ', '')}s"
    if origin is dict:
        return f"a mapping of names to {_type_name(args[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with the keys {[f.name for f in dataclasses.fields(tp)]}"
    return str(tp)


def _convert(tp, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (an int is a float where a float is expected); ConfigError otherwise."""
    def refuse():
        return ConfigError(f"{where}: expected {_type_name(tp)}, found {describe(value)}")

    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise refuse()
        return load_section(tp, value, where)
    if origin in (Union, UnionType):
        for arg in args:
            try:
                return _convert(arg, value, where)
            except ConfigError:
                pass
        raise refuse()
    if origin is tuple:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
            raise refuse()
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise refuse()
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise refuse()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, found {describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise refuse()
        return value
    raise TypeError(f"{where}: no conversion for {tp!r}")


def load_section(cls, data: Mapping[str, Any], where: str = ""):
    """Return an instance of the dataclass ``cls`` from a mapping.

    Unknown keys and wrong types are refused (ConfigError naming the key, what was expected and what
    was found); missing keys take the defaults.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [str(k) for k in data if k not in names]
    if unknown:
        keys = ", ".join(repr(f"{where}.{k}" if where else k) for k in unknown)
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {keys}: expected "
                          f"{'keys of ' + repr(where) if where else 'top-level keys'} among {names}")
    hints = get_type_hints(cls)
    values = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        if not where:
            raise
        raise ConfigError(f"{where}.{exc}") from None


@dataclass(frozen=True)
class TrainConfig:
    """A loaded training config: the typed values, where they came from, and the hash of the effective config."""

    values: BCTrainConfig | RLTrainConfig
    path: str
    sha256: str

    @property
    def data(self) -> dict:
        """The effective config as plain data (every key, defaults filled in)."""
        return dataclasses.asdict(self.values)


def load_train_config(path: str | Path, overrides: Mapping | None = None,
                      schema: type | str | None = None) -> TrainConfig:
    """Read a training config (config/train_bc.yaml, config/train_rl.yaml) into its typed dataclass.

    ``schema``: :class:`BCTrainConfig`, :class:`RLTrainConfig` or their command name (``bc``, ``rl``);
    None: the one whose command section (``bc:`` or ``rl:``) the file has. ``overrides`` are merged into
    the file's mapping first. Raises ConfigError naming the file, the key, what was expected and found.
    The hash is the SHA-256 of the effective config (every key, defaults filled in), recorded in the
    checkpoint and the model's metadata.
    """
    p = resolve_path(path)
    with open(p, "r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a mapping of sections, found {describe(data)}")
    if overrides:
        data = deep_update(data, overrides)
    if isinstance(schema, str):
        if schema not in TRAIN_CONFIGS:
            raise ConfigError(f"training config kind: expected one of {list(TRAIN_CONFIGS)}, found {schema!r}")
        schema = TRAIN_CONFIGS[schema]
    if schema is None:
        kinds = [k for k in TRAIN_CONFIGS if k in data]
        if len(kinds) != 1:
            raise ConfigError(f"{p}: expected one of the sections {list(TRAIN_CONFIGS)} (which command the config "
                              f"is for), found {sorted(str(k) for k in data)}")
        schema = TRAIN_CONFIGS[kinds[0]]
    try:
        values = load_section(schema, data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return TrainConfig(values=values, path=str(p), sha256=config_sha256(dataclasses.asdict(values)))
