"""residual_control.params_file: the one reader of ROS 2 params files."""
from __future__ import annotations

import pytest

from residual_control import params_file
from residual_control.paths import default_params_file


def test_node_params_merge_the_all_nodes_entry_under_the_nodes_own(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters: {joints: [a, b], x: 1}\n"
                    "node:\n  ros__parameters: {x: 2, y: 3}\nempty:\n")
    data = params_file.load(path)
    assert params_file.node_params(data, "node") == {"joints": ["a", "b"], "x": 2, "y": 3}
    assert params_file.node_params(data, "other") == {"joints": ["a", "b"], "x": 1}
    assert params_file.section(data, "empty") == {} and params_file.section(data, "absent") == {}
    section = params_file.section(data, "node")
    section["x"] = 5  # a copy: the loaded file is not changed
    assert params_file.section(data, "node")["x"] == 2


def test_the_shipped_file_gives_every_runtime_node_the_robot_joints():
    data = params_file.load(default_params_file())
    joints = params_file.section(data, "/**")["joints"]
    for node in ("base_controller", "residual_policy", "residual_mixer"):
        assert params_file.node_params(data, node)["joints"] == joints


def test_bad_files_are_refused_naming_what_was_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected an existing file, found '.*missing.yaml'"):
        params_file.load(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="expected a mapping of node names, found list"):
        params_file.load(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert params_file.load(empty) == {}
