"""Robot folders (residual_control/robot/folder.py): the shipped ones load, broken ones are refused clearly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from residual_control import params_file
from residual_control.robot.folder import (DEFAULT_ROBOT, RobotFolderError, load_robot, robot_folder,
                                           shipped_robots)

from support import ROOT


def test_the_built_in_arm_is_the_default_and_agrees_with_its_params_file():
    spec = load_robot()
    assert spec.name == DEFAULT_ROBOT and spec.root == ROOT / "robots" / DEFAULT_ROBOT
    assert spec.description.is_file() and spec.params is not None
    node = params_file.node_params(params_file.load(str(spec.params)), "base_controller")
    assert list(spec.joints) == list(node["joints"])
    np.testing.assert_allclose(spec.kp, node["kp"])
    np.testing.assert_allclose(spec.kd, node["kd"])
    np.testing.assert_allclose(spec.limits.effort, node["command_max"])
    np.testing.assert_allclose(-spec.limits.effort, node["command_min"])
    mixer = params_file.node_params(params_file.load(str(spec.params)), "residual_mixer")
    np.testing.assert_allclose(spec.residual_limit, mixer["residual_limit"])
    assert spec.payload_mass == node["model"]["payload_mass"]


def test_every_shipped_robot_loads_by_name_and_by_folder():
    names = shipped_robots()
    assert DEFAULT_ROBOT in names
    for name in names:
        by_name = load_robot(name)
        assert load_robot(ROOT / "robots" / name).joints == by_name.joints
        assert load_robot(ROOT / "robots" / name / "robot.yaml").name == by_name.name
        assert np.all(by_name.workspace_lower >= by_name.limits.position_lower)
        assert np.all(by_name.workspace_upper <= by_name.limits.position_upper)


def _write(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "robots" / DEFAULT_ROBOT / "robot.yaml").read_text())
    spec = load_robot()
    for key in ("description", "params", "reference", "plant", "model"):
        data[key] = str(getattr(spec, key))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.mark.parametrize("changes, expected", [
    ({"colour": "red"}, "unknown keys ['colour']"),
    ({"joints": None}, "expected key 'joints'"),
    ({"joints": ["a", "a"]}, "distinct joint names"),
    ({"home": [0.0]}, "home: expected 2 numbers (one per joint), found [0.0]"),
    ({"home": [0.0, 4.0]}, "home: expected inside the position limits, found outside for ['elbow']"),
    ({"gains": {"kp": [1.0, -1.0], "kd": [0.0, 0.0]}}, "gains.kp: expected numbers >= 0"),
    ({"residual_limit": [70.0, 1.0]}, "residual_limit: expected <= limits.effort, found larger for ['shoulder']"),
    ({"description": "missing.urdf"}, "description: expected a file, found no"),
    ({"command_interface": "position"}, "command_interface: expected one of ['effort'], found 'position'"),
    ({"randomization": {"payload_mass": [1.0, 0.0]}}, "randomization: expected keys"),
])
def test_a_broken_robot_yaml_is_refused_naming_the_key(tmp_path, changes, expected):
    with pytest.raises(RobotFolderError) as err:
        load_robot(_write(tmp_path, **changes))
    assert expected in str(err.value)
    assert "robot.yaml" in str(err.value)


def test_an_unknown_robot_names_the_shipped_ones(tmp_path):
    with pytest.raises(RobotFolderError, match=r"shipped robot's name \[.*'planar2'"):
        robot_folder("no_such_robot")
    with pytest.raises(RobotFolderError, match="expected a robot.yaml in it"):
        robot_folder(tmp_path)


def test_a_shipped_robots_name_wins_over_a_folder_of_that_name_without_robot_yaml(tmp_path, monkeypatch):
    (tmp_path / "fer").mkdir()
    monkeypatch.chdir(tmp_path)
    assert robot_folder("fer") == ROOT / "robots" / "fer"
    (tmp_path / "fer" / "robot.yaml").write_text("name: mine\n")
    assert robot_folder("fer") == Path("fer")  # a user's own folder with a robot.yaml comes first
