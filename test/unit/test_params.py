"""Parameter specs (core/params.py) against the params file config/residual_control.yaml."""
import dataclasses
import math

import numpy as np
import pytest
import yaml

from residual_control import params_file
from residual_control.core.errors import ConfigError
from residual_control.core.mixer import Mixer, MixerConfig, Mode
from residual_control.core.params import (
    BASE_PARAMS, BOOL, DOUBLE, DOUBLE_ARRAY, INTEGER, MIXER_PARAMS, POLICY_PARAMS, STRING, STRING_ARRAY, ParamSpec,
    spec_map,
)

from support import ROOT as REPO
from support import flat

PARAMS_FILE = REPO / "config/residual_control.yaml"
SECTIONS = {"base_controller": BASE_PARAMS, "residual_policy": POLICY_PARAMS, "residual_mixer": MIXER_PARAMS}
ALL_SPECS = [(group, s) for group, specs in SECTIONS.items() for s in specs]


def load_params() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())


def node_params(node: str) -> dict:
    """Return what the params file gives a node: the ``/**`` entries it declares, then its own section."""
    return flat(params_file.node_params(load_params(), node, defaults=False))


def test_params_file_sections():
    data = load_params()
    assert "/**" in data and set(data) <= {"/**", *SECTIONS, "residual_controller"}
    for name, section in data.items():
        assert set(section) == {"ros__parameters"}, name


def node_section_problems(data: dict) -> list[str]:
    """Return what is wrong in the node sections of a loaded params file: unknown keys, invalid values."""
    problems = []
    for node in set(SECTIONS) & set(data):
        specs = spec_map(SECTIONS[node])
        for key, value in flat(data[node]["ros__parameters"]).items():
            if key not in specs:
                problems.append(f"{node}: '{key}' has no ParamSpec in the node's spec list")
                continue
            try:
                normalised = specs[key].validate(value)
            except ConfigError as exc:
                problems.append(f"{node}: {exc}")
                continue
            if specs[key].kind in (DOUBLE, DOUBLE_ARRAY):
                np.testing.assert_allclose(normalised, value)
            else:
                assert normalised == value
    return problems


def test_every_key_of_a_node_section_is_specified_and_valid():
    assert node_section_problems(load_params()) == []
    # A user's tuning under a node's name is checked the same way (a typo, a value out of range).
    tuned = {**load_params(), "residual_mixer": {"ros__parameters": {"residual_timout": 0.08, "residual_gain": 2.0}},
             "residual_policy": {"ros__parameters": {"perception_timeout": 0.3}}}
    problems = node_section_problems(tuned)
    assert len(problems) == 2, problems
    assert "'residual_timout' has no ParamSpec" in problems[0] + problems[1]
    assert any("residual_gain" in p and "found 2.0" in p for p in problems), problems


def test_global_section_is_the_robot():
    """``/**`` holds robot-specific values only, each a parameter of some node and valid by its spec."""
    for key, value in flat(load_params()["/**"]["ros__parameters"]).items():
        specs = [spec_map(SECTIONS[node])[key] for node in SECTIONS if key in spec_map(SECTIONS[node])]
        assert specs, f"'/**' key '{key}' is not a parameter of any node"
        for spec in specs:
            assert spec.robot_specific, f"'/**' key '{key}' is a generic parameter: set it under a node's name"
            spec.validate(value)


def test_nested_model_keys_are_flattened():
    keys = set(flat(load_params()["/**"]["ros__parameters"]))
    model_keys = {k for k in keys if k.startswith("model.")}
    assert model_keys == {"model.payload_mass"}
    assert "robot" in keys
    assert "model" not in keys


def test_params_file_array_lengths_match_joints():
    for node in SECTIONS:
        p = node_params(node)
        n = len(p["joints"])
        specs = spec_map(SECTIONS[node])
        for key, value in p.items():
            if specs[key].kind == DOUBLE_ARRAY:
                assert len(value) == n, (node, key)


def robot_values(node: str) -> dict:
    """Return the robot-specific values of a node in the built-in arm's params file."""
    return {k: v for k, v in node_params(node).items() if spec_map(SECTIONS[node])[k].robot_specific}


@pytest.mark.parametrize("group, spec", ALL_SPECS, ids=[f"{g}.{s.name}" for g, s in ALL_SPECS])
def test_robot_specific_parameters_have_no_default_in_the_generic_schema(group, spec):
    """Joint names, the per-joint vectors (gains, limits), the robot folder and its payload are the robot's.

    The dynamics library of the nominal model (model.backend) is a choice with a default.
    """
    robot = spec.name in ("joints", "robot", "model.payload_mass") or spec.kind == DOUBLE_ARRAY
    assert spec.robot_specific == robot, spec.name
    assert (spec.default is None) == robot, spec.name


@pytest.mark.parametrize("node", sorted(SECTIONS))
def test_params_file_gives_every_robot_specific_value(node):
    """Each robot-specific parameter of the node is set by the robot's params file (validated above)."""
    given = node_params(node)
    robot = [s.name for s in SECTIONS[node] if s.robot_specific]
    assert robot, node
    missing = [name for name in robot if name not in given]
    assert not missing, f"{node}: {PARAMS_FILE.name} leaves {missing} unset (they have no default)"


@pytest.mark.parametrize("node", sorted(SECTIONS))
def test_params_file_writes_no_generic_default_again(node):
    """A generic parameter in the params file differs from its default: no default is written twice."""
    specs = spec_map(SECTIONS[node])
    given = node_params(node)
    again = {k: v for k, v in given.items() if not specs[k].robot_specific and specs[k].validate(v) ==
             specs[k].validate(specs[k].default)}
    assert not again, f"{node}: {PARAMS_FILE.name} repeats the schema's defaults {again}"


@pytest.mark.parametrize("group, spec", [(g, s) for g, s in ALL_SPECS if not s.robot_specific],
                         ids=[f"{g}.{s.name}" for g, s in ALL_SPECS if not s.robot_specific])
def test_every_default_validates(group, spec):
    value = spec.validate(spec.default)
    if spec.kind in (DOUBLE, DOUBLE_ARRAY):
        np.testing.assert_allclose(value, spec.default)
    else:
        assert value == spec.default
    if spec.choices is not None:
        assert spec.default in spec.choices
    assert spec.description and spec.doc.startswith(spec.description)


@pytest.mark.parametrize("specs", list(SECTIONS.values()), ids=list(SECTIONS))
def test_spec_names_unique(specs):
    names = [s.name for s in specs]
    assert len(names) == len(set(names))


def mixer_params() -> dict:
    """Return the schema's defaults and the built-in arm's robot-specific values."""
    return {**{s.name: s.default for s in MIXER_PARAMS if not s.robot_specific}, **robot_values("residual_mixer")}


def test_defaults_and_the_robot_values_build_a_mixer_config():
    cfg = MixerConfig.from_params(mixer_params())
    assert cfg.joints == ("shoulder", "elbow")


def _as_plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else list(value) if isinstance(value, tuple) else value


def test_no_mixer_default_is_written_twice():
    """The specs hold the mixer's defaults.

    from_params of the robot's values alone is the specs' defaults, every default of the MixerConfig
    dataclass is its spec's, and the robot-specific ones have none.
    """
    specs = spec_map(MIXER_PARAMS)
    robot = robot_values("residual_mixer")
    cfg = MixerConfig.from_params(robot)
    for name in MixerConfig.__dataclass_fields__:
        expected = robot[name] if specs[name].robot_specific else specs[name].default
        assert _as_plain(getattr(cfg, name)) == expected, name
    with pytest.raises(ConfigError) as info:
        MixerConfig.from_params({})
    assert str(info.value) == ("joints, residual_limit, residual_limit_max, command_min, command_max: expected a "
                               "value from the robot's params file (robot-specific, no default), found none")
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
    params = mixer_params()
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
    params = {**mixer_params(), **changes}
    with pytest.raises(ConfigError) as info:
        MixerConfig.from_params(params)
    assert str(info.value) == message


def test_mixer_config_from_params_file():
    specs = spec_map(MIXER_PARAMS)
    raw = params_file.node_params(params_file.load(PARAMS_FILE), "residual_mixer")  # the file on the defaults
    p = {k: specs[k].validate(v) for k, v in flat(raw).items()}
    cfg = MixerConfig.from_params(p)
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


def test_the_readme_parameter_tables_are_generated_from_the_schema(tmp_path, capsys):
    """The README's tables are exactly what `residual-control params` generates; a changed spec shows."""
    from residual_control.cli import PARAMS_BEGIN, main, params_tables, readme_with_tables

    readme = (REPO / "README.md").read_text()
    assert readme_with_tables(readme) == readme, "README parameter tables differ from the schema: run " \
        "`.venv/bin/residual-control params --readme README.md`"
    tables = params_tables()
    assert sum(line.startswith("| `") for line in tables.splitlines()) == sum(map(len, SECTIONS.values()))
    assert "| `residual_gain` | double | `1.0` |  | Gain g on the clamped residual. Range 0 to 1. |" in tables
    assert "| `kp` | double_array | robot's params file | N m/rad |" in tables
    # The writer rewrites a stale copy and leaves a current one as it is.
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace("Gain g on the clamped residual.", "Old text."))
    assert main(["params", "--readme", str(stale)]) == 0
    assert stale.read_text() == readme and "rewritten" in capsys.readouterr().out
    assert main(["params", "--readme", str(stale)]) == 0 and "up to date" in capsys.readouterr().out
    with pytest.raises(ValueError, match="expected one line"):
        readme_with_tables(readme.replace(PARAMS_BEGIN, ""))


def test_the_nominal_model_is_needed_only_where_it_is_used():
    """The robot folder and model.payload_mass are required of a model-based base and a gravity-damping mixer."""
    model = spec_map(BASE_PARAMS)["robot"]
    assert spec_map(MIXER_PARAMS)["robot"] is model
    assert spec_map(MIXER_PARAMS)["model.payload_mass"] is spec_map(BASE_PARAMS)["model.payload_mass"]
    assert model.required_by({"controller_type": "pd_gravity"})
    assert model.required_by({"controller_type": "computed_torque"})
    assert not model.required_by({"controller_type": "pid"})
    assert model.required_by({"damp_gravity": True})
    assert not model.required_by({"damp_gravity": False})
    assert model.required_by({"controller_type": "pid", "damp_gravity": True})  # the fused node
    kp = spec_map(BASE_PARAMS)["kp"]
    assert kp.required_by({"controller_type": "pid"}) and kp.required_by({})
    for name in ("ki", "integral_limit"):  # the PID's own
        spec = spec_map(BASE_PARAMS)[name]
        assert spec.required_by({"controller_type": "pid"}), name
        assert not spec.required_by({"controller_type": "pd_gravity"}) and not spec.required_by({}), name
    assert not spec_map(MIXER_PARAMS)["residual_gain"].required_by({})


def test_every_node_declares_the_diagnostics_period_it_reads():
    """base_controller read it without declaring it: a params file's value was dropped by rclpy."""
    from residual_control.core.params import NODE_PARAMS

    for node in ("base_controller", "residual_policy", "residual_mixer", "residual_controller"):
        assert "diagnostics_period" in {s.name for s in NODE_PARAMS[node]}, node
