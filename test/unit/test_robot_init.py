"""`residual-control robot init | params | check` (residual_control/robot/init.py, check.py) through the CLI."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, example
from hypothesis import strategies as st

from residual_control import params_file
from residual_control.cli import main
from residual_control.core.base_controllers import make_base_controller
from residual_control.core.mixer import MixerConfig
from residual_control.core.params import NODE_PARAMS, spec_map
from residual_control.robot.folder import load_robot
from residual_control.robot.init import E_MAX, derive_gains, home_and_workspace, nice_round, num
from residual_control.robot.nominal import nominal_model
from residual_control.sim.plant import PlantParams

from support import ROOT, flat
from support.chains import write_chain_package

PACKAGE = "chain_description"


def chain_folder(tmp_path: Path, seed: int, n: int, capsys) -> tuple[Path, Path, Path]:
    """Write a random chain package and run `robot init` on it; return (its URDF, the package path, the folder)."""
    pkgs = tmp_path / "pkgs"
    urdf = write_chain_package(pkgs, np.random.default_rng(seed), n, package=PACKAGE)
    out = tmp_path / "robot"
    assert main(["robot", "init", str(urdf), "--out", str(out), "--package-path", str(pkgs)]) == 0
    capsys.readouterr()
    return urdf, pkgs, out


def check(folder: Path, capsys) -> tuple[int, str]:
    code = main(["robot", "check", str(folder)])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("seed, n", [(0, 3), (1, 7)])
def test_a_random_chain_goes_through_init_then_check(tmp_path, capsys, seed, n):
    pkgs = tmp_path / "pkgs"
    urdf = write_chain_package(pkgs, np.random.default_rng(seed), n, package=PACKAGE)
    assert "<transmission" not in urdf.read_text() and "package://" in urdf.read_text()
    out = tmp_path / "robot"
    assert main(["robot", "init", str(urdf), "--out", str(out), "--package-path", str(pkgs)]) == 0
    printed = capsys.readouterr().out
    assert "check before use:" in printed and "home pose" in printed and "gains" in printed
    assert "velocity limits of" not in printed  # the URDF gives every velocity limit

    code, report = check(out, capsys)
    assert code == 0, report
    lines = report.strip().splitlines()
    assert lines[-1].endswith("all checks passed")
    assert all(": ok (" in line for line in lines[:-1]), report
    for name in ("description", "joints", "inertias", "limits", "payload link", "nominal model = simulator",
                 "params file", "reference", "plant"):
        assert any(line.startswith(f"{name}: ok") for line in lines), (name, report)

    spec = load_robot(out)
    assert spec.joints == tuple(f"j{i}" for i in range(1, n + 1))
    assert spec.description == urdf.resolve() and spec.package_paths == (pkgs.resolve(),)
    raw = yaml.safe_load((out / "robot.yaml").read_text())
    assert not Path(raw["description"]).is_absolute() and not Path(raw["package_paths"][0]).is_absolute()
    assert spec.payload_link == "tool0"  # the end of the rigid chain after the last joint
    assert spec.params == (out / "params.yaml").resolve() and spec.plant and spec.reference
    # The derived values follow the rules of init (module docstring).
    span = spec.limits.position_upper - spec.limits.position_lower
    margin = np.minimum(0.2, 0.1 * span)
    assert np.all(spec.workspace_lower >= spec.limits.position_lower + margin - 1e-9)
    assert np.all(spec.workspace_upper <= spec.limits.position_upper - margin + 1e-9)
    assert np.all((spec.workspace_lower <= spec.home) & (spec.home <= spec.workspace_upper))
    assert np.all(spec.kp * E_MAX <= 0.5 * spec.limits.effort * 1.005)
    np.testing.assert_allclose(spec.residual_limit, 0.25 * spec.limits.effort, rtol=1e-5)
    compiled = spec.compile()
    m = compiled.model
    moving = max(m.body_subtreemass[m.jnt_bodyid[j]] for j in compiled.joint_ids)
    top = spec.randomization["payload_mass"][1]
    assert spec.randomization["payload_mass"][0] == 0.0 and 0.06 * moving <= top <= 0.15 * moving


def test_the_params_file_of_init_passes_the_schema(tmp_path, capsys):
    _, _, out = chain_folder(tmp_path, 2, 4, capsys)
    data = params_file.load(out / "params.yaml")
    assert set(data) == {"/**"}
    spec = load_robot(out)
    n = spec.dof
    for node in ("base_controller", "residual_mixer"):
        given = flat(params_file.node_params(data, node, defaults=False))
        specs = spec_map(NODE_PARAMS[node])
        robot_specific = {s.name for s in NODE_PARAMS[node] if s.robot_specific}
        assert robot_specific <= set(given), (node, robot_specific - set(given))
        for key, value in given.items():
            value = specs[key].validate(value)
            if specs[key].kind == "double_array":
                assert len(value) == n and all(isinstance(v, float) for v in given[key]), key
    # /** holds the robot's values only (no generic default written again).
    for key in flat(params_file.section(data, "/**")):
        assert any(key in spec_map(NODE_PARAMS[node]) and spec_map(NODE_PARAMS[node])[key].robot_specific
                   for node in ("base_controller", "residual_mixer", "residual_policy")), key
    base = params_file.node_params(data, "base_controller")
    controller = make_base_controller(base, nominal_model(base))
    q = spec.home
    action = controller.compute(q, np.zeros(n), q, np.zeros(n), 0.0)
    # At rest on the reference, pd_gravity holds the arm against gravity: the nominal model's torques.
    np.testing.assert_allclose(action, spec.nominal_model().gravity_torque(q), atol=1e-9)
    cfg = MixerConfig.from_params(params_file.node_params(data, "residual_mixer"))
    assert cfg.joints == spec.joints
    np.testing.assert_allclose(cfg.command_max, spec.limits.effort)
    reference = params_file.section(params_file.load(out / "reference.yaml"), "reference_publisher")
    assert reference["joints"] == list(spec.joints) and reference["trajectory_type"] == "sinusoid"
    plant = PlantParams.from_yaml(out / "plants" / "shifted.yaml")
    assert plant.actuator_gain == 0.85 and plant.payload_mass == 0.75 * spec.randomization["payload_mass"][1]


def _edit(path: Path, pattern: str, repl: str) -> None:
    text = path.read_text()
    new, count = re.subn(pattern, repl, text, flags=re.S)
    assert count == 1, pattern
    path.write_text(new)


def test_check_refuses_a_link_without_inertia(tmp_path, capsys):
    urdf, _, out = chain_folder(tmp_path, 3, 4, capsys)
    _edit(urdf, r'(<link name="link2">)\s*<inertial>.*?</inertial>', r"\1")
    code, report = check(out, capsys)
    assert code == 1, report
    line = next(line for line in report.splitlines() if line.startswith("description:"))
    assert "FAILED" in line and "link 'link2'" in line and "no mass or inertia" in line, line
    assert "inertias: skipped (the description does not compile)" in report
    assert report.strip().splitlines()[-1].endswith("FAILED: description")


def test_check_refuses_a_robot_yaml_naming_an_unknown_joint(tmp_path, capsys):
    _, _, out = chain_folder(tmp_path, 4, 3, capsys)
    _edit(out / "robot.yaml", r"joints: \[j1, j2, j3\]", "joints: [j1, wrist, j3]")
    code, report = check(out, capsys)
    assert code == 1, report
    line = next(line for line in report.splitlines() if line.startswith("description:"))
    assert "FAILED" in line and "joint 'wrist' not found" in line and "'j2'" in line, line
    # The params file still names j2: refused, naming what was expected and found.
    line = next(line for line in report.splitlines() if line.startswith("params file:"))
    assert "FAILED" in line and "['j1', 'wrist', 'j3']" in line and "['j1', 'j2', 'j3']" in line, line


def test_check_refuses_an_unresolvable_mesh(tmp_path, capsys):
    _, _, out = chain_folder(tmp_path, 5, 3, capsys)
    _edit(out / "robot.yaml", r"package_paths: \[[^\]]*\]", "package_paths: []")
    code, report = check(out, capsys)
    assert code == 1, report
    line = next(line for line in report.splitlines() if line.startswith("description:"))
    assert "FAILED" in line and f"package://{PACKAGE}/meshes/link1.stl" in line and "--package-path" in line, line


def test_check_exits_2_when_robot_yaml_cannot_be_read(tmp_path, capsys):
    (tmp_path / "robot.yaml").write_text("joints: [a, b\n")
    code, report = check(tmp_path, capsys)
    assert code == 2 and report.startswith("robot.yaml: FAILED: cannot read it"), report
    code, report = check(tmp_path / "missing", capsys)
    assert code == 2 and "expected a robot folder" in report, report


def test_check_refuses_a_robot_yaml_beyond_the_description(tmp_path, capsys):
    _, _, out = chain_folder(tmp_path, 6, 3, capsys)
    spec = load_robot(out)
    effort = spec.limits.effort.copy()
    effort[1] *= 2
    text = (out / "robot.yaml").read_text()
    (out / "robot.yaml").write_text(re.sub(r"  effort: \[[^\]]*\]",
                                           "  effort: [" + ", ".join(num(v) for v in effort) + "]", text))
    code, report = check(out, capsys)
    assert code == 1, report
    line = next(line for line in report.splitlines() if line.startswith("limits:"))
    assert "FAILED" in line and "j2" in line and "expected <= the description's effort limit" in line, line


def test_init_refuses_a_non_empty_out_and_a_description_that_does_not_compile(tmp_path, capsys):
    pkgs = tmp_path / "pkgs"
    urdf = write_chain_package(pkgs, np.random.default_rng(7), 3, package=PACKAGE)
    out = tmp_path / "robot"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["robot", "init", str(urdf), "--out", str(out), "--package-path", str(pkgs)]) == 2
    err = capsys.readouterr().err
    assert "expected a new or empty folder" in err and "found 1 entries" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(["robot", "init", str(urdf), "--out", str(out), "--package-path", str(pkgs), "--force"]) == 0
    capsys.readouterr()
    assert (out / "robot.yaml").is_file() and (out / "notes.txt").read_text() == "mine"

    fresh = tmp_path / "fresh"
    assert main(["robot", "init", str(urdf), "--out", str(fresh)]) == 2  # no --package-path
    err = capsys.readouterr().err
    assert f"package://{PACKAGE}/meshes/link1.stl" in err and "--package-path" in err, err
    assert not fresh.exists()
    assert main(["robot", "init", str(urdf), "--out", str(fresh), "--package-path", str(pkgs),
                 "--joints", "j1,j9"]) == 2
    assert "joint 'j9' not found" in capsys.readouterr().err


def test_params_rewrites_only_with_force(tmp_path, capsys):
    _, _, out = chain_folder(tmp_path, 8, 3, capsys)
    before = (out / "robot.yaml").read_text()
    assert main(["robot", "params", str(out)]) == 2
    assert "expected no params.yaml" in capsys.readouterr().err
    (out / "params.yaml").write_text("# edited\n")
    assert main(["robot", "params", str(out), "--force"]) == 0
    assert (out / "params.yaml").read_text().startswith("# ROS 2 params file")
    assert (out / "robot.yaml").read_text() == before  # already points at the files


def test_init_of_an_mjcf_says_it_has_no_velocity_limits(tmp_path, capsys):
    out = tmp_path / "arm"
    assert main(["robot", "init", str(ROOT / "description" / "arm.mjcf.xml"), "--out", str(out), "--copy"]) == 0
    printed = capsys.readouterr().out
    assert "an MJCF has no velocity limit" in printed and "velocity limits of ['shoulder', 'elbow']" in printed
    spec = load_robot(out)
    assert spec.description == (out / "arm.mjcf.xml").resolve()
    np.testing.assert_allclose(spec.limits.velocity, [2.0, 2.0])
    code, report = check(out, capsys)
    assert code == 0, report


def test_the_shipped_robots_pass_check(capsys):
    for name in ("planar2", "fer"):
        code, report = check(ROOT / "robots" / name, capsys)
        assert code == 0, report


def test_the_fer_gains_are_inits_rule_on_its_workspace():
    """robots/fer/robot.yaml's gains (derive.py) are what init derives on the same home and workspace."""
    spec = load_robot("fer")
    kp, kd, m_eff, m_eff_max = derive_gains(spec.compile(), spec.home, spec.workspace_lower, spec.workspace_upper,
                                            spec.limits.effort, spec.payload_mass)
    np.testing.assert_allclose(kp, spec.kp)
    np.testing.assert_allclose(kd, spec.kd)
    assert np.all(m_eff <= m_eff_max)


finite = st.floats(-5.0, 5.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(finite, st.floats(0.05, 7.0), st.one_of(st.none(), finite)), min_size=1, max_size=7))
@example([(0.0, 1.4826, None)])  # the case a clean-clone CI run found
def test_home_and_workspace_stay_inside_the_limits(rows):
    lower = np.array([r[0] for r in rows])
    upper = lower + np.array([r[1] for r in rows])
    homes = [r[2] for r in rows]
    home = None if any(h is None for h in homes) else homes
    h, wl, wu, clipped = home_and_workspace(lower, upper, home)
    margin = np.minimum(0.2, 0.1 * (upper - lower))
    assert np.all(wl >= lower + margin - 1e-4) and np.all(wu <= upper - margin + 1e-4)
    assert np.all((wl <= h) & (h <= wu))
    # each bound is rounded to 4 decimals (up to 5e-5 each, plus the binary representation of the decimals):
    # the width may exceed the half-range bound by a little over 1e-4 (found: 0.7414 against 0.7413)
    assert np.all(wu - wl <= 2 * np.minimum(0.6, 0.25 * (upper - lower)) + 2e-4)
    if home is None:
        assert not clipped


@settings(deadline=None)
@given(st.floats(1e-4, 1e4))
def test_nice_round_is_within_a_factor_of_its_input(x):
    r = nice_round(x)
    assert x / 1.5 <= r <= x * 1.5
    mantissa = r / 10.0 ** math.floor(math.log10(r) + 1e-9)
    assert any(math.isclose(mantissa, m, rel_tol=1e-9) for m in (1.0, 1.5, 2.0, 2.5, 3.0, 5.0))


@settings(deadline=None)  # the first formatting of a subnormal float can take a few hundred ms
@given(st.floats(-1e4, 1e4, allow_nan=False))
def test_numbers_are_written_as_yaml_floats(x):
    value = yaml.safe_load(f"v: {num(x)}")["v"]
    assert isinstance(value, float) and math.isclose(value, float(f"{x:.6g}"), rel_tol=1e-12, abs_tol=0.0)


def test_init_copy_refuses_a_description_whose_relative_meshes_stay_behind(tmp_path, capsys):
    urdf = write_chain_package(tmp_path / "pkgs", np.random.default_rng(9), 3, package=PACKAGE)
    urdf.write_text(urdf.read_text().replace(f"package://{PACKAGE}/", "../"))  # meshes relative to the URDF
    out = tmp_path / "robot"
    assert main(["robot", "init", str(urdf), "--out", str(out), "--copy"]) == 2
    err = capsys.readouterr().err
    assert "--copy: expected the copied description to compile" in err and "../meshes/link1.stl" in err, err
    assert not (out / urdf.name).exists() and not (out / "robot.yaml").exists()
    assert main(["robot", "init", str(urdf), "--out", str(out)]) == 0  # referred to where it is: compiles
    capsys.readouterr()
    code, report = check(out, capsys)
    assert code == 0, report


def test_init_on_the_fer_with_its_home_and_workspace_reproduces_its_robot_yaml(tmp_path, capsys):
    fer = load_robot("fer")
    csv = lambda values: ",".join(f"{v:g}" for v in values)  # noqa: E731
    out = tmp_path / "fer"
    assert main(["robot", "init", str(fer.description), "--out", str(out), f"--home={csv(fer.home)}",
                 f"--workspace-lower={csv(fer.workspace_lower)}", f"--workspace-upper={csv(fer.workspace_upper)}"]) == 0
    capsys.readouterr()
    spec = load_robot(out)
    assert spec.joints == fer.joints and spec.payload_link == fer.payload_link
    for key in ("position_lower", "position_upper", "velocity", "effort"):
        np.testing.assert_allclose(getattr(spec.limits, key), getattr(fer.limits, key), err_msg=key)
    for key in ("home", "workspace_lower", "workspace_upper", "kp", "kd", "residual_limit"):
        np.testing.assert_allclose(getattr(spec, key), getattr(fer, key), err_msg=key)
    assert {k: v for k, v in spec.randomization.items() if k != "payload_mass"} == \
        {k: v for k, v in fer.randomization.items() if k != "payload_mass"}
    assert main(["robot", "init", str(fer.description), "--out", str(tmp_path / "bad"), "--workspace-lower=0"]) == 2
    assert "expected both, found one" in capsys.readouterr().err
