"""logs.bag: a recording written through rosbags' Writer and read back as an Episode; the refusals.

Bags are written from CDR bytes (as the recorder writes what rclpy delivers) of
synthetic messages with known values, so the reader's alignment is checked
against the values that went in.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from residual_control.logs import bag
from residual_control.logs.bag import BagError, BagWriter, read_episode, recording_metadata, serialize
from residual_control.logs.topics import META_JOINTS, META_MODEL_SHA256, META_PARAMS, META_ROBOT, TOPICS

J = ("shoulder", "elbow")
PARAMS = """residual_mixer:
  ros__parameters:
    joints: [shoulder, elbow]
    residual_limit: [12.0, 6.0]
    residual_gain: 1.0
residual_policy:
  ros__parameters:
    control_rate_hz: 100.0
"""
DT = 0.01
T0 = 100.0


def _store():
    return bag._typestore()


def _time(t: float):
    Time = _store().types["builtin_interfaces/msg/Time"]
    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)))


def _js(t: float, names, position=(), velocity=(), effort=()):
    s = _store().types
    header = s["std_msgs/msg/Header"](stamp=_time(t), frame_id="")
    return s["sensor_msgs/msg/JointState"](
        header=header, name=list(names), position=np.asarray(position, dtype=np.float64),
        velocity=np.asarray(velocity, dtype=np.float64), effort=np.asarray(effort, dtype=np.float64))


def _array(values):
    s = _store().types
    layout = s["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return s["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(values, dtype=np.float64))


def _string(text):
    return _store().types["std_msgs/msg/String"](data=text)


def expected_rows(k: int):
    """Return the values the synthetic recording carries for period k (ordered by J)."""
    t = T0 + k * DT
    q = np.array([np.sin(t), np.cos(t)])
    qd = np.array([np.cos(t), -np.sin(t)])
    base = np.array([1.0 + k, -2.0 - k])
    res = np.array([0.1 * k, -0.05 * k])
    applied = 0.5 * res
    cmd = base + applied
    return t, q, qd, base, res, applied, cmd


def write_recording(path, periods: int = 50, storage: str = "mcap", joints=J, params=PARAMS, custom=True,
                    skip=(), swap_every: int = 0, state_names=None, drop_topics=(), clockless: int = 0):
    """Write a synthetic recording of ``periods`` control periods; returns the path.

    ``clockless``: the first periods' messages are logged at time 0 (a recorder on sim time before /clock).
    """
    meta = recording_metadata(params_text=params, robot="planar2", joints=joints) if custom else {}
    state_names = list(state_names or joints)
    order = [state_names.index(j) for j in joints]
    with BagWriter(path, storage=storage, custom_data=meta) as w:
        for topic in TOPICS:
            if topic.name not in drop_topics:
                w.add_topic(bag.resolve_topic(topic.name, "/robot1"), topic.msgtype)
        name = lambda rel: bag.resolve_topic(rel, "/robot1")  # noqa: E731
        modes = "residual_mixer/mode" not in drop_topics
        if modes:
            w.write(name("residual_mixer/mode"), 0 if clockless else int((T0 - 1) * 1e9),
                    serialize(_string("fallback: start"), "std_msgs/msg/String"))
        for k in range(periods):
            t, q, qd, base, res, applied, cmd = expected_rows(k)
            ns = int(round(t * 1e9))
            pos = np.empty(len(state_names))
            vel = np.empty(len(state_names))
            pos[order], vel[order] = q, qd
            msgs = [("reference", _js(t - 0.5 * DT, J, q + 0.1, qd + 0.2), "sensor_msgs/msg/JointState"),
                    ("perception", _array([k, 2.0 * k, 3.0]), "std_msgs/msg/Float64MultiArray"),
                    ("joint_states", _js(t, state_names, pos, vel), "sensor_msgs/msg/JointState"),
                    ("base_action", _js(t, J, effort=base), "sensor_msgs/msg/JointState"),
                    ("residual_action", _js(t, J, effort=res), "sensor_msgs/msg/JointState"),
                    ("expert_action", _js(t, J, effort=base + res), "sensor_msgs/msg/JointState"),
                    ("commands", _array(cmd), "std_msgs/msg/Float64MultiArray"),
                    ("residual_mixer/applied_residual", _js(t, J, effort=applied), "sensor_msgs/msg/JointState")]
            if swap_every and k % swap_every == 0:
                msgs[-2], msgs[-1] = msgs[-1], msgs[-2]
            for i, (rel, msg, msgtype) in enumerate(msgs):
                if (rel, k) in skip or rel in drop_topics:
                    continue
                w.write(name(rel), 0 if k < clockless else ns + 1000 * i, serialize(msg, msgtype))
            if modes and k == periods // 2:
                w.write(name("residual_mixer/mode"), ns + 9000, serialize(_string("nominal: ok"),
                                                                          "std_msgs/msg/String"))
    return Path(path)


def test_perception_logged_before_the_recorders_clock_ran_reads_as_received_when_it_started(tmp_path):
    """On sim time the recorder logs at 0 until its first /clock: those messages came before its first timed one.

    Read at 0, a perception would look 0.7 s old at a log that starts at 0.7 s (the policy held it fresh:
    a replay saw perception_lost where the log has residuals).
    """
    path = write_recording(tmp_path / "run", clockless=5)
    ep = read_episode(path, joints=J, params_text=PARAMS)
    started = T0 + 5 * DT  # the first message logged on the clock: the reference of period 5
    times = [t for t, _ in ep.perception_messages]
    assert times[:5] == [pytest.approx(started, abs=1e-9)] * 5
    assert times[5:] == [pytest.approx(T0 + k * DT + 1e-6, abs=1e-9) for k in range(5, 50)]
    assert [v[0] for _, v in ep.perception_messages] == list(range(50))  # the order kept
    np.testing.assert_allclose(ep.perception[5:, 0], np.arange(5, 50))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_bag_reads_back_aligned(tmp_path, storage):
    path = write_recording(tmp_path / "run", storage=storage)
    ep = read_episode(path, joints=J, params_text=PARAMS)
    assert ep.joints == J and ep.periods == 50
    for k in (0, 17, 49):
        t, q, qd, base, res, applied, cmd = expected_rows(k)
        assert ep.t[k] == pytest.approx(t, abs=1e-9)
        np.testing.assert_allclose(ep.q[k], q)
        np.testing.assert_allclose(ep.qd[k], qd)
        np.testing.assert_allclose(ep.q_ref[k], q + 0.1)
        np.testing.assert_allclose(ep.a_base[k], base)
        np.testing.assert_allclose(ep.residual[k], res)
        np.testing.assert_allclose(ep.applied_residual[k], applied)
        np.testing.assert_allclose(ep.command[k], cmd)
        np.testing.assert_allclose(ep.expert[k], base + res)
        np.testing.assert_allclose(ep.perception[k], [k, 2.0 * k, 3.0])
    assert ep.complete().all()
    assert [m for _, m in ep.modes] == ["fallback: start", "nominal: ok"]
    md = ep.metadata
    assert md["robot"] == "planar2" and md["params_yaml"] == PARAMS and md["storage"] == storage
    assert md["model_sha256"] == "unknown"  # no model given to recording_metadata
    files = bag.bag_files(path)
    assert md["bag_sha256"] == {f.name: bag.file_sha256(f) for f in files} and len(files) == 1
    assert md["topics"]["joint_states"] == 50


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_independent_rosbags_reader_lists_the_topics(tmp_path, storage):
    from rosbags.rosbag2 import Reader

    path = write_recording(tmp_path / "run", periods=5, storage=storage)
    with Reader(path) as reader:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        custom = reader.storage.metadata.custom
    assert set(topics) == set(bag.topic_list("/robot1"))
    assert topics["/robot1/residual_mixer/applied_residual"] == ("sensor_msgs/msg/JointState", 5)
    assert topics["/robot1/residual_mixer/mode"][1] == 2
    assert json.loads(custom[META_JOINTS]) == list(J) and custom[META_ROBOT] == "planar2"
    assert custom[META_PARAMS] == PARAMS
    assert (path / f"run.{'mcap' if storage == 'mcap' else 'db3'}").is_file()


def test_model_sha256_in_metadata(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really a model, only bytes to hash")
    meta = recording_metadata(model_path=str(model), params_text=PARAMS, robot="r", joints=J)
    import hashlib

    assert meta[META_MODEL_SHA256] == hashlib.sha256(model.read_bytes()).hexdigest()


def test_commands_pair_with_applied_residual_when_received_swapped(tmp_path):
    path = write_recording(tmp_path / "run", periods=30, swap_every=3)
    ep = read_episode(path)
    for k in range(30):
        np.testing.assert_allclose(ep.command[k], expected_rows(k)[6])


def test_dropped_messages_leave_nan_not_shifted_rows(tmp_path):
    skip = {("commands", 10), ("residual_mixer/applied_residual", 20), ("base_action", 5)}
    ep = read_episode(write_recording(tmp_path / "run", periods=30, skip=skip))
    assert np.isnan(ep.command[10]).all() and np.isnan(ep.a_base[5]).all()
    assert np.isnan(ep.command[20]).all()  # a command without its applied residual has no stamp
    for k in (9, 11, 19, 21):
        np.testing.assert_allclose(ep.command[k], expected_rows(k)[6])
    assert ep.complete().sum() == 28


def test_joint_states_in_another_order_and_with_extra_joints(tmp_path):
    path = write_recording(tmp_path / "run", periods=10, state_names=["gripper", "elbow", "shoulder"])
    ep = read_episode(path, joints=J)
    np.testing.assert_allclose(ep.q[3], expected_rows(3)[1])
    ep2 = read_episode(path, joints=("elbow", "shoulder"))  # the caller's order
    np.testing.assert_allclose(ep2.command[3], expected_rows(3)[6][::-1])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_without_custom_data_reads_with_unknown_metadata(tmp_path, storage):
    """What ``ros2 bag record`` of the printed topics gives: no custom_data; joints from the messages."""
    path = write_recording(tmp_path / "run", periods=10, storage=storage, custom=False)
    ep = read_episode(path, joints=J, params_text=PARAMS)
    assert ep.joints == J and ep.metadata["robot"] == "unknown" and ep.metadata["params_yaml"] == "unknown"
    assert ep.metadata["custom_data"] == {}
    np.testing.assert_allclose(ep.command[4], expected_rows(4)[6])


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_refused(tmp_path, storage):
    path = write_recording(tmp_path / "run", periods=200, storage=storage)
    f = bag.bag_files(path)[0]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError) as info:
        read_episode(path, joints=J)
    text = str(info.value)
    assert "expected" in text and ("cut short" in text or "corrupt" in text), text


def test_truncated_bag_file_read_directly_is_refused(tmp_path):
    path = write_recording(tmp_path / "run", periods=100)
    f = bag.bag_files(path)[0]
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(f.read_bytes()[:-200])
    with pytest.raises(BagError, match="cut short|cannot be opened"):
        read_episode(cut)


def test_bag_without_metadata_is_refused(tmp_path):
    path = write_recording(tmp_path / "run", periods=5)
    (path / "metadata.yaml").unlink()
    with pytest.raises(BagError, match="expected a rosbag2 folder with metadata.yaml.*found"):
        read_episode(path)


def test_bag_of_two_graphs_is_refused(tmp_path):
    path = tmp_path / "two"
    with BagWriter(path) as w:
        for ns in ("/robot1", "/robot2"):
            w.add_topic(bag.resolve_topic("joint_states", ns), "sensor_msgs/msg/JointState")
    with pytest.raises(BagError, match=r"expected one graph's topics .*'/robot1/joint_states', '/robot2/joint_states'"):
        read_episode(path)


def test_bag_of_another_robot_is_refused(tmp_path):
    path = write_recording(tmp_path / "run", periods=5)
    with pytest.raises(BagError) as info:
        read_episode(path, joints=("j1", "j2", "j3"))
    text = str(info.value)
    assert "['j1', 'j2', 'j3']" in text and "['shoulder', 'elbow']" in text and "another robot" in text


def test_bag_of_another_robot_without_custom_data_is_refused(tmp_path):
    path = write_recording(tmp_path / "run", periods=5, custom=False)
    with pytest.raises(BagError, match=r"expected a bag of the joints \['a', 'b'\], found one of"):
        read_episode(path, joints=("a", "b"))


@pytest.mark.parametrize("missing", [t.name for t in TOPICS if t.required])
def test_bag_without_a_required_topic_is_refused(tmp_path, missing):
    path = write_recording(tmp_path / "run", periods=5, drop_topics=(missing,))
    with pytest.raises(BagError) as info:
        read_episode(path, joints=J)
    text = str(info.value)
    assert f"found none on ['{missing}']" in text and "expected messages on the required topics" in text


def test_optional_topics_may_be_missing(tmp_path):
    optional = tuple(t.name for t in TOPICS if not t.required)
    ep = read_episode(write_recording(tmp_path / "run", periods=5, drop_topics=optional), joints=J)
    assert ep.residual is None and ep.perception is None and ep.expert is None and ep.modes == []
    assert np.isnan(ep.a_base).all() and ep.complete().all()


def test_bag_with_other_params_is_refused_naming_the_keys(tmp_path):
    path = write_recording(tmp_path / "run", periods=5)
    other = PARAMS.replace("residual_gain: 1.0", "residual_gain: 0.5").replace("100.0", "200.0")
    with pytest.raises(BagError) as info:
        read_episode(path, params_text=other)
    text = str(info.value)
    assert "residual_mixer.ros__parameters.residual_gain" in text
    assert "residual_policy.ros__parameters.control_rate_hz" in text
    assert "residual_limit" not in text


def test_params_compared_parsed_not_as_text(tmp_path):
    path = write_recording(tmp_path / "run", periods=5)
    reformatted = "# a comment\n" + PARAMS.replace("[12.0, 6.0]", "[12, 6.0]")
    assert read_episode(path, params_text=reformatted).periods == 5


def test_writer_refuses_an_existing_path_and_an_unknown_storage(tmp_path):
    with pytest.raises(BagError, match="expected one of \\['mcap', 'sqlite3'\\], found 'rosbag1'"):
        BagWriter(tmp_path / "x", storage="rosbag1")
    (tmp_path / "y").mkdir()
    with pytest.raises(BagError, match="expected a path where no bag exists yet"):
        BagWriter(tmp_path / "y")


def test_read_episodes_of_a_folder_of_bags(tmp_path):
    for i in range(3):
        write_recording(tmp_path / "bags" / f"trial_{i}", periods=5 + i)
    eps = bag.read_episodes([tmp_path / "bags"], joints=J)
    assert [e.periods for e in eps] == [5, 6, 7]
    shutil.rmtree(tmp_path / "bags" / "trial_1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="expected a bag or a folder of bags"):
        bag.read_episodes([tmp_path / "empty"])


def test_topic_list_resolves_namespace_and_mixer_node():
    assert bag.topic_list("robot1")[0] == "/robot1/joint_states"
    fused = bag.topic_list("", mixer_node="residual_controller")
    assert "/residual_controller/applied_residual" in fused and "/residual_controller/mode" in fused
    assert len(set(fused)) == len(TOPICS)


KINDS = ["pair", "swapped", "command only", "applied only", "pair without base", "none"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(KINDS), max_size=40), st.integers(0, 3))
def test_pairing_pairs_exactly_the_periods_with_both_messages(periods, clipped):
    """Every period with both messages and its base action is paired with its own command, never another's.

    Whatever drops and swaps occur, with and without the params' clip limits.
    """
    cmds, applied, bases, order = [], [], [], 0
    limit = 30.0
    for p, kind in enumerate(periods):
        first, second = (0.2, 0.1) if kind == "swapped" else (0.1, 0.2)
        base = np.array([p + 0.25, -p - 0.5]) + (limit if p % 4 == clipped else 0.0)
        res = np.array([0.125, 0.0625 * p])
        cmd = np.minimum(base + res, limit + 1.0)  # some commands clipped at the limit
        if kind in ("pair", "swapped", "command only", "pair without base"):
            cmds.append(bag._Msg(int((p + first) * 1e9), order, _array(cmd)))
            order += 1
        if kind in ("pair", "swapped", "applied only", "pair without base"):
            applied.append(bag._Msg(int((p + second) * 1e9), order, _js(float(p), J, effort=res)))
            order += 1
        if kind != "pair without base":
            bases.append(bag._Msg(int(p * 1e9), order, _js(float(p), J, effort=base)))
            order += 1
    limits = (np.full(2, -np.inf), np.full(2, limit + 1.0))
    for given_limits in (limits, None):
        pairs = bag.pair_commands(cmds, applied, bases, J, given_limits)
        got = {round(s): d for s, d in pairs}
        for p, kind in enumerate(periods):
            # Without the params' limits a clipped command is only known as such when the clip repeats.
            if kind in ("pair", "swapped") and (given_limits is not None or p % 4 != clipped):
                assert p in got, (p, periods)
            if p in got and kind != "pair without base":
                base = np.array([p + 0.25, -p - 0.5]) + (limit if p % 4 == clipped else 0.0)
                np.testing.assert_allclose(got[p], np.minimum(base + np.array([0.125, 0.0625 * p]), limit + 1.0))
        assert len(pairs) <= min(len(cmds), len(applied))
