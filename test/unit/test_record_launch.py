"""``record:=true`` of the launch files: residual_recorder with the launch file's params file, model and bag path.

Evaluated with the stand-in launch modules (test/support/launch_eval.py), like test_launch_files.
"""
import pytest
import yaml

from support import launch_eval
from support.launch_eval import install_standins

from residual_control.logs import bag


@pytest.fixture
def evaluate(monkeypatch, tmp_path):
    other_share = tmp_path / "other_share"
    other_share.mkdir()
    install_standins(monkeypatch, other_share)
    done = []

    def run(name, arguments=None):
        done.append(launch_eval.evaluate(name, arguments))
        return done[-1]

    yield run
    for evaluation in done:
        evaluation.shutdown()


def _overrides(kwargs: dict) -> dict:
    """Return the last params file of a Node: the launch arguments' overrides (launch_params.node_params_files)."""
    data = yaml.safe_load(open(kwargs["parameters"][-1], encoding="utf-8"))
    ((key, entry),) = data.items()
    assert key.endswith("residual_recorder"), key
    return entry["ros__parameters"]


@pytest.mark.parametrize("name", ["residual_control.launch.py", "sim_demo.launch.py"])
def test_no_recorder_by_default(evaluate, name):
    assert not [k for k, _ in evaluate(name).nodes if k.get("executable") == "residual_recorder"]


@pytest.mark.parametrize("name,sim_time", [("residual_control.launch.py", False), ("sim_demo.launch.py", True)])
def test_record_true_starts_the_recorder_with_the_graph_files(evaluate, name, sim_time, tmp_path):
    out = str(tmp_path / "bag1")
    evaluation = evaluate(name, {"record": "true", "record_path": out, "record_storage": "sqlite3",
                                 "namespace": "arm1", "model_path": "/models/m.onnx"})
    node = evaluation.node("residual_recorder")
    assert node["name"] == "residual_recorder"
    params = _overrides(node)
    assert params["out"] == out and params["storage"] == "sqlite3" and params["model_path"] == "/models/m.onnx"
    assert params["use_sim_time"] is sim_time
    assert params["params_file"] and params["params_file"] == launch_eval.declared_arguments(name)[
        "params_file"][0]
    # In the graph's namespace, with the other nodes: its relative topics resolve next to theirs.
    namespaces = {k.get("executable"): ns for k, ns in evaluation.nodes}
    if name == "residual_control.launch.py":
        assert namespaces["residual_recorder"] == namespaces["residual_mixer"]
    assert bag.topic_list("arm1")[0] == "/arm1/joint_states"


def test_recorder_is_a_console_script():
    text = open(launch_eval.LAUNCH_DIR.parent / "setup.py", encoding="utf-8").read()
    assert "residual_recorder = residual_control.nodes.recorder:main" in text


def test_the_recorder_reads_the_commands_where_the_mixer_sends_them(evaluate, tmp_path):
    """command_topic remaps the mixer's output; the recorder is remapped alike (a bag without commands is refused)."""
    evaluation = evaluate("residual_control.launch.py", {
        "record": "true", "record_path": str(tmp_path / "bag"), "command_topic": "/effort_controller/commands",
        "joint_states_topic": "/robot/joint_states"})
    mixer, recorder = evaluation.node("residual_mixer"), evaluation.node("residual_recorder")
    expected = {("commands", "/effort_controller/commands"), ("joint_states", "/robot/joint_states")}
    assert set(map(tuple, mixer["remappings"])) == expected
    assert set(map(tuple, recorder["remappings"])) == expected


def test_up_record_remaps_the_recorder_with_the_command_topic(tmp_path):
    from residual_control.cli import _recorder, build_parser

    args = build_parser().parse_args(["up", "--record", str(tmp_path), "--command-topic", "/effort/commands"])
    assert dict(_recorder(args, str(tmp_path / "b"), "p.yaml", "").remaps) == {"commands": "/effort/commands"}
    plain = build_parser().parse_args(["up", "--record", str(tmp_path)])
    assert dict(_recorder(plain, str(tmp_path / "b"), "p.yaml", "").remaps) == {}
