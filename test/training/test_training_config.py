"""Training configs: typed dataclasses whose defaults are the shipped YAML's, read by one strict loader."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from residual_control.core.errors import ConfigError
from residual_control.training.common.config import (
    TRAIN_CONFIGS, BCTrainConfig, RLConfig, RLTrainConfig, config_sha256, load_section, load_train_config,
)

from support import ROOT

SHIPPED = {"bc": ROOT / "config" / "train_bc.yaml", "rl": ROOT / "config" / "train_rl.yaml"}


def _same(default, value, where: str) -> None:
    """Assert that default (from a dataclass) equals value (from YAML), key for key, with the same type."""
    if isinstance(value, dict):
        assert isinstance(default, dict), where
        assert set(default) == set(value), f"{where}: dataclass keys {sorted(default)}, YAML keys {sorted(value)}"
        for k in value:
            _same(default[k], value[k], f"{where}.{k}")
    elif isinstance(value, list):
        assert isinstance(default, (list, tuple)) and len(default) == len(value), (where, default, value)
        for i, (d, v) in enumerate(zip(default, value)):
            _same(d, v, f"{where}[{i}]")
    else:
        assert type(default) is type(value) and default == value, \
            f"{where}: dataclass default {default!r}, YAML {value!r}"


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_every_dataclass_default_is_the_shipped_yaml_value(kind):
    """The dataclass defaults and the YAML the documented training commands use cannot drift apart."""
    raw = yaml.safe_load(SHIPPED[kind].read_text())
    _same(dataclasses.asdict(TRAIN_CONFIGS[kind]()), raw, kind)
    loaded = load_train_config(SHIPPED[kind])
    assert type(loaded.values) is TRAIN_CONFIGS[kind]
    assert loaded.values == TRAIN_CONFIGS[kind]()


def test_known_disagreements_are_settled_for_the_yaml():
    """The values the training code once defaulted differently (rl.py: 30000 steps, batch 256, critic 256x256)."""
    rl = RLTrainConfig().rl
    assert (rl.total_steps, rl.batch_size, rl.critic_hidden) == (15000, 128, (128, 128))
    assert BCTrainConfig().envelope.base_alone_episodes == 50


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_the_hash_is_of_the_effective_config(kind, tmp_path):
    """A config that leaves every key out means the shipped YAML: same values, same hash."""
    shipped = load_train_config(SHIPPED[kind])
    assert shipped.sha256 == config_sha256(yaml.safe_load(SHIPPED[kind].read_text()))
    minimal = tmp_path / f"{kind}.yaml"
    minimal.write_text(f"{kind}: {{}}\n")
    loaded = load_train_config(minimal)
    assert loaded.values == shipped.values and loaded.sha256 == shipped.sha256
    changed = load_train_config(minimal, {"seed": 1})
    assert changed.values.seed == 1 and changed.sha256 != shipped.sha256


@pytest.mark.parametrize("model, config", [("residual_bc.onnx", "train_bc_smooth.yaml"),
                                           ("residual_bc_plain.onnx", "train_bc.yaml"),
                                           ("residual_bc_mpc.onnx", "train_bc_mpc.yaml")])
def test_the_shipped_model_was_trained_with_the_shipped_config(model, config):
    """The hash in each shipped planar2 model is the one the loader gives its config today."""
    onnx = pytest.importorskip("onnx")
    path = ROOT / "models" / model
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["training_config_sha256"] == load_train_config(ROOT / "config" / config).sha256


@pytest.mark.parametrize("kind, overrides, fragments", [
    ("bc", {"bc": {"episodez": 3}}, ["unknown key 'bc.episodez'", "expected keys of 'bc'", "'episodes'"]),
    ("bc", {"learning_rate": 0.1}, ["unknown key 'learning_rate'", "expected top-level keys", "'bc'"]),
    ("bc", {"bc": {"expert": {"kp": [1.0, 1.0]}}}, ["unknown key 'bc.expert.kp'", "'extra_kp'"]),
    ("rl", {"rl": {"target_entropy": -2.0}}, ["unknown key 'rl.target_entropy'", "'ent_coef'"]),
    ("rl", {"envelope": {"margin": 0.2}}, ["unknown key 'envelope'", "'rl'"]),
])
def test_an_unknown_key_is_refused_naming_it_and_the_known_ones(kind, overrides, fragments):
    with pytest.raises(ConfigError) as info:
        load_train_config(SHIPPED[kind], overrides)
    msg = str(info.value)
    assert msg.startswith(str(SHIPPED[kind])), msg
    for f in fragments:
        assert f in msg, msg


@pytest.mark.parametrize("kind, overrides, fragments", [
    ("bc", {"bc": {"lr": "fast"}}, ["bc.lr: expected a finite number", "found 'fast'"]),
    ("bc", {"bc": {"lr": float("nan")}}, ["bc.lr: expected a finite number", "found nan"]),
    ("bc", {"bc": {"episodes": 2.5}}, ["bc.episodes: expected an integer", "found 2.5"]),
    ("bc", {"bc": {"episodes": True}}, ["bc.episodes: expected an integer", "found True"]),
    ("bc", {"network": {"hidden": 64}}, ["network.hidden: expected a list of integers", "found 64"]),
    ("bc", {"network": {"hidden": [64, "64"]}}, ["network.hidden[1]: expected an integer", "found '64'"]),
    ("bc", {"env": {"randomization": {"payload_mass": "heavy"}}},
     ["env.randomization.payload_mass: expected a list of numbers", "found 'heavy'"]),
    ("bc", {"env": {"randomization": []}}, ["env.randomization: expected a mapping", "found []"]),
    ("bc", {"env": 3}, ["env: expected a mapping with the keys", "'episode_seconds'", "found 3"]),
    ("rl", {"rl": {"warmup_from_policy": "yes"}}, ["rl.warmup_from_policy: expected true or false", "'yes'"]),
    ("rl", {"rl": {"ent_coef": [0.1]}}, ["rl.ent_coef: expected a string or a number", "found [0.1]"]),
    ("rl", {"params_file": 5}, ["params_file: expected a string", "found 5"]),
    ("rl", {"rl": {"eval_every": 0}}, ["rl.eval_every: expected a value >= 1", "found 0"]),
    ("bc", {"bc": {"batch_size": 0}}, ["bc.batch_size: expected a value >= 1", "found 0"]),
    ("bc", {"env": {"residual_delay_steps": -1}}, ["env.residual_delay_steps: expected a value >= 0", "found -1"]),
    ("bc", {"envelope": {"margin": -0.1}}, ["envelope.margin: expected a value >= 0.0", "found -0.1"]),
])
def test_a_wrong_type_or_value_is_refused_naming_expected_and_found(kind, overrides, fragments):
    with pytest.raises(ConfigError) as info:
        load_train_config(SHIPPED[kind], overrides)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, msg


def test_numbers_are_read_as_their_declared_type():
    cfg = load_train_config(SHIPPED["bc"], {"bc": {"lr": 1}, "env": {"randomization": {"payload_mass": [0, 1]}}})
    assert cfg.values.bc.lr == 1.0 and type(cfg.values.bc.lr) is float
    assert cfg.values.env.randomization == {"payload_mass": (0.0, 1.0)}
    assert load_train_config(SHIPPED["rl"], {"rl": {"ent_coef": 0.1}}).values.rl.ent_coef == 0.1


def test_the_command_is_inferred_or_named():
    assert type(load_train_config(SHIPPED["rl"], schema="rl").values) is RLTrainConfig
    with pytest.raises(ConfigError, match="unknown keys 'rl', 'benchmark'"):
        load_train_config(SHIPPED["rl"], schema="bc")
    with pytest.raises(ConfigError, match=r"expected one of \['bc', 'rl'\], found 'ppo'"):
        load_train_config(SHIPPED["rl"], schema="ppo")


def test_a_file_for_no_command_is_refused(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("seed: 0\n")
    with pytest.raises(ConfigError, match=r"expected one of the sections \['bc', 'rl'\].*found \['seed'\]"):
        load_train_config(path)


def test_a_partial_rl_section_takes_the_yaml_defaults():
    """make_sac accepts a mapping; what it leaves out is RLConfig's (the YAML's) value."""
    rl = load_section(RLConfig, {"batch_size": 32}, "rl")
    assert rl.batch_size == 32 and rl.lr == RLConfig().lr and rl.critic_hidden == (128, 128)
