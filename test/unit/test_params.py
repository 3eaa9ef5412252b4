"""Parameter specs (core/params.py) against the params file config/residual_control.yaml."""
import dataclasses
import math

import numpy as np
import pytest
import yaml

from residual_control.core.errors import ConfigError
from residual_control.core.mixer import Mixer, MixerConfig, Mode
from residual_control.core.params import (
    BASE_PARAMS, BOOL, DOUBLE, DOUBLE_ARRAY, INTEGER, MIXER_PARAMS, POLICY_PARAMS, STRING, STRING_ARRAY, ParamSpec,
    spec_map,
)

from support import ROOT as REPO

PARAMS_FILE = REPO / "config/residual_control.yaml"
SECTIONS = {"base_controller": BASE_PARAMS, "residual_policy": POLICY_PARAMS, "residual_mixer": MIXER_PARAMS}
ALL_SPECS = [(group, s) for group, specs in SECTIONS.items() for s in specs]


def load_params() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())


def flat(section: dict) -> dict:
    out = {}
    for k, v in section.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def node_params(node: str) -> dict:
    data = load_params()
    p = flat(data["/**"]["ros__parameters"])
    p.update(flat(data[node]["ros__parameters"]))
    return p


def test_params_file_sections():
    data = load_params()
    assert set(data) == {"/**", *SECTIONS}
    for name, section in data.items():
        assert set(section) == {"ros__parameters"}, name


@pytest.mark.parametrize("node", sorted(SECTIONS))
def test_every_key_of_node_section_is_specified_and_valid(node):
    specs = spec_map(SECTIONS[node])
    section = flat(load_params()[node]["ros__parameters"])
    assert section, node
    for key, value in section.items():
        assert key in specs, f"{node}: '{key}' in {PARAMS_FILE.name} has no ParamSpec in the node's spec list"
        normalised = specs[key].validate(value)
        if specs[key].kind in (DOUBLE, DOUBLE_ARRAY):
            np.testing.assert_allclose(normalised, value)
        else:
            assert normalised == value


@pytest.mark.parametrize("node", sorted(SECTIONS))
def test_global_section_applies_to_every_node(node):
    specs = spec_map(SECTIONS[node])
    for key, value in flat(load_params()["/**"]["ros__parameters"]).items():
        assert key in specs, f"'/**' key '{key}' is not a parameter of {node}"
        specs[key].validate(value)


def test_nested_model_keys_are_flattened():
    keys = set(flat(load_params()["base_controller"]["ros__parameters"]))
    model_keys = {k for k in keys if k.startswith("model.")}
    assert model_keys == {"model.link_lengths", "model.link_masses", "model.com_offsets", "model.link_inertias",
                          "model.payload_mass"}
    assert "model" not in keys


def test_params_file_array_lengths_match_joints():
    for node in SECTIONS:
        p = node_params(node)
        n = len(p["joints"])
        specs = spec_map(SECTIONS[node])
        for key, value in p.items():
            if specs[key].kind == DOUBLE_ARRAY:
                assert len(value) == n, (node, key)


@pytest.mark.parametrize("node", sorted(SECTIONS))
def test_params_file_gives_every_robot_specific_value(node):
    """Joint names, per-joint vectors and the nominal model are the robot's: its params file sets each one
    (validated by the spec above), none is left to a spec default."""
    given = node_params(node)
    robot = [s.name for s in SECTIONS[node]
             if s.name == "joints" or s.kind == DOUBLE_ARRAY or s.name.startswith("model.")]
    assert robot, node
    missing = [name for name in robot if name not in given]
    assert not missing, f"{node}: {PARAMS_FILE.name} leaves {missing} to the spec defaults"


@pytest.mark.parametrize("group, spec", ALL_SPECS, ids=[f"{g}.{s.name}" for g, s in ALL_SPECS])
def test_every_default_validates(group, spec):
    value = spec.validate(spec.default)
    if spec.kind in (DOUBLE, DOUBLE_ARRAY):
        np.testing.assert_allclose(value, spec.default)
    else:
        assert value == spec.default
    if spec.kind == DOUBLE_ARRAY:
        assert len(spec.default) == len(spec_map(SECTIONS[group])["joints"].default), spec.name
    if spec.choices is not None:
        assert spec.default in spec.choices
    assert spec.description and spec.doc.startswith(spec.description)


@pytest.mark.parametrize("specs", list(SECTIONS.values()), ids=list(SECTIONS))
def test_spec_names_unique(specs):
    names = [s.name for s in specs]
    assert len(names) == len(set(names))


def test_defaults_build_a_mixer_config():
    defaults = {s.name: s.default for s in MIXER_PARAMS}
    cfg = MixerConfig.from_params(defaults)
    assert cfg.joints == ("shoulder", "elbow")


def _as_plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else list(value) if isinstance(value, tuple) else value


def test_no_mixer_default_is_written_twice():
    """The specs hold the mixer's defaults: from_params of nothing but the joints is the specs' defaults,
    and every default of the MixerConfig dataclass is its spec's (the per-joint vectors have none)."""
    specs = spec_map(MIXER_PARAMS)
    cfg = MixerConfig.from_params({"joints": ["shoulder", "elbow"]})
    for name in MixerConfig.__dataclass_fields__:
        assert _as_plain(getattr(cfg, name)) == specs[name].default, name
    empty = MixerConfig.from_params({})
    assert all(_as_plain(getattr(empty, k)) == _as_plain(getattr(cfg, k)) for k in MixerConfig.__dataclass_fields__)
    vectors = {"residual_limit", "residual_limit_max", "command_min", "command_max", "damp_kd"}
    for name, f in MixerConfig.__dataclass_fields__.items():
        if name == "joints" or name in vectors:
            # Robot-specific: given by the params file (damp_kd None: no damping gains).
            assert f.default in (dataclasses.MISSING, None), name
        else:
            assert f.default == specs[name].default and type(f.default) is type(specs[name].default), name
    direct = MixerConfig(("a",), [1.0], [2.0], [-5.0], [5.0])
    for name in set(MixerConfig.__dataclass_fields__) - vectors - {"joints"}:
        assert getattr(direct, name) == specs[name].default, name
    assert direct.damp_kd.tolist() == [0.0]


@pytest.mark.parametrize("name, value", [
    ("residual_gain", 1.5), ("residual_gain", "1"), ("residual_timeout", 0.0), ("base_timeout", math.nan),
    ("recovery_hold_time", 61.0), ("fallback_ramp_time", 2.0), ("base_stale_behavior", "explode"),
    ("residual_limit", [-1.0, 1.0]), ("damp_kd", [1.0, -1.0]), ("joints", ["a", "a"]), ("joints", ["a", ""]),
    ("joints", []),
])
def test_mixer_config_per_value_checks_are_the_specs(name, value):
    """MixerConfig refuses a bad field with its spec's own message (one check, one wording)."""
    specs = spec_map(MIXER_PARAMS)
    with pytest.raises(ConfigError) as spec_info:
        specs[name].validate(value, where=name)
    params = {s.name: s.default for s in MIXER_PARAMS}
    if name == "joints" and value:
        params.update({k: [0.0] * len(value) for k in ("residual_limit", "command_min", "command_max", "damp_kd")},
                      residual_limit_max=[1.0] * len(value))
    params[name] = value
    with pytest.raises(ConfigError) as info:
        MixerConfig.from_params(params)
    assert str(info.value) == str(spec_info.value)
    assert str(info.value).startswith(f"{name}: expected") and "found" in str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"residual_limit": [30.0, 1.0]}, "residual_limit: expected values <= residual_limit_max [25.0, 12.0], "
                                      "found [30.0, 1.0]"),
    ({"command_min": [70.0, 0.0]}, "command_min/command_max: expected command_min <= command_max per joint, "
                                   "found [70.0, 0.0] and [60.0, 30.0]"),
    ({"damp_kd": [1.0]}, "damp_kd: expected 2 values (one per joint), found 1"),
])
def test_mixer_config_checks_the_relations_between_fields(changes, message):
    """Each value is valid on its own (its spec accepts it); together with the others it is not."""
    specs = spec_map(MIXER_PARAMS)
    for name, value in changes.items():
        specs[name].validate(value)
    params = {**{s.name: s.default for s in MIXER_PARAMS}, **changes}
    with pytest.raises(ConfigError) as info:
        MixerConfig.from_params(params)
    assert str(info.value) == message


def test_mixer_config_from_params_file():
    specs = spec_map(MIXER_PARAMS)
    p = {k: specs[k].validate(v) for k, v in node_params("residual_mixer").items()}
    cfg = MixerConfig.from_params(p)
    raw = node_params("residual_mixer")
    assert cfg.joints == ("shoulder", "elbow")
    for key in ("residual_limit", "residual_limit_max", "command_min", "command_max"):
        np.testing.assert_array_equal(getattr(cfg, key), raw[key])
        assert getattr(cfg, key).dtype == float
    for key in ("residual_gain", "residual_timeout", "observation_timeout", "base_timeout"):
        assert getattr(cfg, key) == raw[key]
    assert np.all(cfg.residual_limit <= cfg.residual_limit_max)
    assert (cfg.recovery_hold_time, cfg.recovery_ramp_time, cfg.base_stale_behavior) == (0.5, 1.0, "damp")
    assert cfg.fallback_ramp_time == raw["fallback_ramp_time"] and cfg.damp_kd.tolist() == raw["damp_kd"]
    # and it mixes: FALLBACK at start
    out = Mixer(cfg).step(cfg.joints, [70.0, 0.0], 0.0, 0.0)
    assert out.mode is Mode.FALLBACK
    np.testing.assert_array_equal(out.command, [60.0, 0.0])


def test_mixer_and_policy_agree_on_residual_limit():
    assert node_params("residual_mixer")["residual_limit"] == node_params("residual_policy")["residual_limit"]
    m, b = node_params("residual_mixer"), node_params("base_controller")
    assert m["command_min"] == b["command_min"] and m["command_max"] == b["command_max"]


def test_every_mixer_config_field_has_a_spec():
    names = {s.name for s in MIXER_PARAMS}
    assert set(MixerConfig.__dataclass_fields__) <= names


# ----------------------------------------------------------------- ParamSpec.validate
D = ParamSpec("gain", DOUBLE, 1.0, "g", min=0.0, max=1.0)
I = ParamSpec("count", INTEGER, 1, "n", min=0)  # noqa: E741 (I for INTEGER, next to D, A, S, B)
A = ParamSpec("limit", DOUBLE_ARRAY, [1.0], "eps", min=0.0)
S = ParamSpec("mode", STRING, "stop", "m", choices=("stop", "zero"))
FREE = ParamSpec("path", STRING, "", "p")
SA = ParamSpec("names", STRING_ARRAY, ["a"], "n")
B = ParamSpec("flag", BOOL, False, "b")


@pytest.mark.parametrize("spec, value, expected", [
    (D, 1, 1.0), (D, 0.5, 0.5), (I, 3, 3), (A, (1, 2.5), [1.0, 2.5]), (A, np.array([0.0, 3.0]), [0.0, 3.0]),
    (A, [], []), (S, "zero", "zero"), (FREE, "anything", "anything"), (SA, ("x", "y"), ["x", "y"]), (SA, [], []),
    (B, True, True),
])
def test_validate_accepts_and_normalises(spec, value, expected):
    out = spec.validate(value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("spec, value, fragments", [
    (D, "1.0", ["expected a number", "found '1.0'"]),
    (D, True, ["expected a number", "found True"]),
    (D, None, ["expected a number", "found None"]),
    (D, 1.5, ["expected values <= 1.0", "found 1.5"]),
    (D, -0.1, ["expected values >= 0.0", "found -0.1"]),
    (D, float("nan"), ["expected finite values", "found nan"]),
    (D, float("inf"), ["expected finite values", "found inf"]),
    (I, -1, ["expected values >= 0", "found -1"]),
    (A, 5.0, ["expected a list of numbers", "found 5.0"]),
    (A, "1,2", ["expected a list of numbers", "found '1,2'"]),  # the string, not its characters
    (A, [1.0, "2"], ["expected a list of numbers", "found [1.0, '2']"]),
    (A, [1.0, True], ["expected a list of numbers", "found [1.0, True]"]),
    (A, [1.0, -2.0], ["expected values >= 0.0", "found -2.0"]),
    (A, [1.0, float("nan")], ["expected finite values", "found nan"]),
    (S, "explode", ["expected one of ['stop', 'zero']", "found 'explode'"]),
    (S, 3, ["expected a string", "found 3"]),
    (SA, "abc", ["expected a list of strings", "found 'abc'"]),
    (SA, ["a", 1], ["expected a list of strings", "found ['a', 1]"]),
    (B, 1, ["expected true or false", "found 1"]),
    (B, "true", ["expected true or false", "found 'true'"]),
    (ParamSpec("x", "complex", 0, "?"), 0, ["unknown kind 'complex'"]),
])
def test_validate_errors_name_expected_and_found(spec, value, fragments):
    with pytest.raises(ConfigError) as info:
        spec.validate(value)
    msg = str(info.value)
    assert msg.startswith(f"parameter '{spec.name}': "), msg
    for f in fragments:
        assert f in msg, msg
    if spec.kind != "complex":
        assert "expected" in msg and "found" in msg


def test_validate_error_message_is_bounded():
    with pytest.raises(ConfigError) as info:
        D.validate("x" * 10000)
    assert len(str(info.value)) < 250


@pytest.mark.parametrize("value", [5, None, 1.5])
def test_string_array_non_iterable_is_config_error(value):
    with pytest.raises(ConfigError, match="expected a list of strings"):
        SA.validate(value)


def test_doc_text():
    spec = spec_map(MIXER_PARAMS)["residual_gain"]
    assert spec.doc == "Gain g on the clamped residual (range 0 to 1)"
    ro = spec_map(MIXER_PARAMS)["residual_limit_max"]
    assert ro.doc.endswith("[N m] (range 0 to inf) (read-only)")
    assert "(one of: damp, stop, zero, hold)" in spec_map(MIXER_PARAMS)["base_stale_behavior"].doc
    assert math.isfinite(spec_map(BASE_PARAMS)["derivative_filter_hz"].max)


def test_the_readme_parameter_tables_are_the_specs(capsys):
    """Every row `residual-control params` prints is in the README, word for word (defaults included)."""

    from residual_control.cli import main

    assert main(["params"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert len(rows) > 20
    readme = (REPO / "README.md").read_text()
    stale = [row for row in rows if row not in readme]
    assert not stale, "README parameter rows differ from the specs (regenerate with residual-control params):\n" + \
        "\n".join(stale)
