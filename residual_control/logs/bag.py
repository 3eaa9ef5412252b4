"""rosbag2 recordings of the running graph, written and read through the ``rosbags`` library.

Writing (:class:`BagWriter`): MCAP by default, sqlite3 on request; the
messages are stored as the CDR bytes the middleware delivered (rclpy
subscriptions with ``raw=True``), never re-encoded; the bag's
``metadata.yaml`` carries ``custom_data`` with the model's sha256 and path,
the params file's text, the robot's name and joints and the format version
(the keys of :mod:`residual_control.logs.topics`).

Reading (:func:`read_episode`): a bag written here or by ``ros2 bag record``
of the topics ``residual-control record --print-topics`` prints, turned into
an :class:`~residual_control.logs.episode.Episode`. Refused with a
:class:`BagError` naming what was expected and what was found: a bag cut
short, a bag of another robot, a bag without a required topic, a bag
recorded with another params file.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import yaml

from ..core.errors import ResidualControlError
from ..core.step import ReferenceAcceleration
from .episode import Episode
from .topics import (FORMAT_VERSION, META_FORMAT, META_JOINTS, META_MODEL_PATH, META_MODEL_SHA256, META_PARAMS,
                     META_ROBOT, TOPICS)

STORAGES = ("mcap", "sqlite3")
UNKNOWN = "unknown"
#: Episode.metadata keys filled from the bag's custom_data (UNKNOWN when the bag has none).
METADATA_KEYS = {"model_sha256": META_MODEL_SHA256, "model_path": META_MODEL_PATH, "params_yaml": META_PARAMS,
                 "robot": META_ROBOT, "format": META_FORMAT}


class BagError(ResidualControlError):
    """A bag that cannot be read as a recording of this robot and configuration."""


@functools.lru_cache(maxsize=1)
def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recording_metadata(*, model_path: str = "", params_text: str | None = None, robot: str = "",
                       joints: Sequence[str] = ()) -> dict[str, str]:
    """Return the custom_data of a recording: model sha256 and path, params text, robot, joints (JSON), format."""
    data = {META_FORMAT: FORMAT_VERSION, META_ROBOT: robot or UNKNOWN,
            META_JOINTS: json.dumps(list(joints)) if joints else UNKNOWN,
            META_PARAMS: params_text if params_text is not None else UNKNOWN,
            META_MODEL_PATH: str(model_path) if model_path else UNKNOWN,
            META_MODEL_SHA256: file_sha256(model_path) if model_path and Path(model_path).is_file() else UNKNOWN}
    return data


def resolve_topic(name: str, namespace: str = "", mixer_node: str = "residual_mixer") -> str:
    """Return the fully qualified name of a topic of :data:`TOPICS` in ``namespace``.

    The mixer's private topics (``residual_mixer/...``) are resolved under
    ``mixer_node`` (``residual_controller`` for the fused node).
    """
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("residual_mixer/"):
        name = mixer_node + name[len("residual_mixer"):]
    return f"{ns}/{name}"


def topic_list(namespace: str = "", mixer_node: str = "residual_mixer") -> list[str]:
    """Every recorded topic, fully qualified, in :data:`TOPICS` order (what ``ros2 bag record`` takes)."""
    return [resolve_topic(t.name, namespace, mixer_node) for t in TOPICS]


class BagWriter:
    """A rosbag2 bag being written (rosbags ``Writer``): add topics, write CDR bytes, close.

    ``timestamp`` of :meth:`write` is the receipt time in ns (the recorder's
    clock). Close it (or use it as a context manager): ``metadata.yaml`` and
    the MCAP summary are written on close only.
    """

    def __init__(self, path: str | Path, *, storage: str = "mcap",
                 custom_data: Mapping[str, str] | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"storage: expected one of {list(STORAGES)}, found {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: expected a path where no bag exists yet, found an existing "
                           f"{'folder' if self.path.is_dir() else 'file'}")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._writer.open()
        self._typestore = _typestore()
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def add_topic(self, topic: str, msgtype: str, qos: Sequence = ()):
        """Register ``topic`` of ROS 2 type ``msgtype`` (``sensor_msgs/msg/JointState``)."""
        conn = self._writer.add_connection(topic, msgtype, typestore=self._typestore, offered_qos_profiles=qos)
        self._connections[topic] = conn
        self.counts[topic] = 0
        return conn

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        if self.closed:
            raise BagError(f"{self.path}: expected an open bag to write {topic} to, found it closed")
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"{self.path}: expected one of the added topics {sorted(self._connections)}, "
                           f"found {topic!r}")
        self._writer.write(conn, int(timestamp_ns), bytes(data))
        self.counts[topic] += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serialize(msg, msgtype: str) -> bytes:
    """CDR bytes of a rosbags message object (tests, tools; the recorder writes what it receives)."""
    return bytes(_typestore().serialize_cdr(msg, msgtype))


# ---------------------------------------------------------------------------------------------- reading
@dataclass
class _Msg:
    log_ns: int          # receipt time in the bag
    order: int           # position in the bag (ties of log_ns)
    msg: object


def bag_files(path: str | Path) -> list[Path]:
    """Return the storage files of a bag folder (from metadata.yaml), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    meta = path / "metadata.yaml"
    if not meta.is_file():
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else "nothing"
        raise BagError(f"{path}: expected a rosbag2 folder with metadata.yaml (written when the recorder closes "
                       f"the bag; `ros2 bag reindex` rebuilds a lost one), found {found}")
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        names = [Path(p).name for p in info["relative_file_paths"]]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"{meta}: expected rosbag2 metadata with relative_file_paths, found an unreadable "
                       f"file ({exc})") from None
    return [path / n for n in names]


def bag_sha256(path: str | Path) -> dict[str, str]:
    """{file name: sha256} of the bag's storage files."""
    return {p.name: file_sha256(p) for p in bag_files(path) if p.is_file()}


def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def params_differences(expected_text: str, found_text: str) -> list[str]:
    """Dotted keys whose values differ between two params files (parsed, so formatting does not count)."""
    try:
        a = _flatten(yaml.safe_load(expected_text) or {})
        b = _flatten(yaml.safe_load(found_text) or {})
    except yaml.YAMLError as exc:
        raise BagError(f"params: expected two YAML params files, found one unreadable ({exc})") from None
    return sorted(k for k in set(a) | set(b) if a.get(k, "<missing>") != b.get(k, "<missing>"))


def _read_all(path: Path) -> tuple[dict, dict[str, list[_Msg]], dict[str, str], int]:
    """(custom_data, {relative topic: messages}, {relative topic: type}, expected count) of a bag."""
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(path)
        reader.open()
    except FileNotFoundError as exc:
        raise BagError(f"{path}: expected a rosbag2 bag, found none ({exc})") from None
    except Exception as exc:  # rosbags ReaderError, OSError, a storage library's error
        raise BagError(f"{path}: expected a complete rosbag2 bag, found one that cannot be opened "
                       f"(cut short or corrupt?): {exc}") from None
    store = _typestore()
    try:
        custom = dict(getattr(getattr(reader.storage, "metadata", None), "custom", None) or {})
        expected = int(reader.message_count)
        wanted = {t.name for t in TOPICS}
        by_topic: dict[str, list[_Msg]] = {}
        types: dict[str, str] = {}
        read = 0
        conns = []
        sources: dict[str, set] = {}
        for c in reader.connections:
            rel = _relative_name(c.topic)
            types[rel] = c.msgtype
            if rel in wanted:
                conns.append(c)
                sources.setdefault(rel, set()).add(c.topic)
        mixed = {rel: sorted(full) for rel, full in sources.items() if len(full) > 1}
        if mixed:
            raise BagError(f"{path}: expected one graph's topics (one namespace), found several topics for the "
                           f"same name: {mixed}")
        try:
            for i, (conn, log_ns, raw) in enumerate(reader.messages(connections=conns or reader.connections)):
                read += 1
                rel = _relative_name(conn.topic)
                if rel not in wanted:
                    continue
                by_topic.setdefault(rel, []).append(_Msg(log_ns, i, store.deserialize_cdr(raw, conn.msgtype)))
        except Exception as exc:  # rosbags ReaderError, apsw errors, CDR errors of a cut message
            raise BagError(f"{path}: expected {expected} messages (metadata.yaml), found the bag cut short or "
                           f"corrupt after {read}: {type(exc).__name__}: {exc}") from None
        counted = sum(c.msgcount for c in conns) if conns else expected
        if expected and read < counted:
            raise BagError(f"{path}: expected {counted} messages of the recorded topics (metadata.yaml), found "
                           f"{read}: the bag is cut short")
    finally:
        reader.close()
    return custom, by_topic, types, expected


def _relative_name(topic: str) -> str:
    """Return the :data:`TOPICS` name a fully qualified topic stands for (namespace and mixer node stripped)."""
    parts = topic.strip("/").split("/")
    for t in TOPICS:
        tp = t.name.split("/")
        if t.name.startswith("residual_mixer/"):
            if len(parts) >= 2 and parts[-1] == tp[-1] and parts[-2] in ("residual_mixer", "residual_controller"):
                return t.name
        elif parts[-1] == t.name:
            return t.name
    return topic


def _stamp(msg) -> float:
    return float(msg.header.stamp.sec) + 1e-9 * float(msg.header.stamp.nanosec)


def _ordered(names: Sequence[str], values, joints: Sequence[str]) -> np.ndarray:
    """``values`` (ordered by ``names``) in the order of ``joints``; NaN where missing."""
    out = np.full(len(joints), np.nan)
    vals = np.asarray(values, dtype=float)
    if len(vals) == 0:
        return out
    index = {n: i for i, n in enumerate(names)}
    for k, j in enumerate(joints):
        i = index.get(j)
        if i is not None and i < len(vals):
            out[k] = vals[i]
    return out


def _match_rows(t: np.ndarray, stamps: np.ndarray, tol: float) -> np.ndarray:
    """Row of ``t`` each stamp matches (nearest within ``tol``), -1 where none."""
    if len(t) == 0 or len(stamps) == 0:
        return np.full(len(stamps), -1, dtype=int)
    idx = np.clip(np.searchsorted(t, stamps), 0, len(t) - 1)
    left = np.clip(idx - 1, 0, len(t) - 1)
    pick = np.where(np.abs(t[left] - stamps) < np.abs(t[idx] - stamps), left, idx)
    return np.where(np.abs(t[pick] - stamps) <= tol, pick, -1)


def _stamped_rows(msgs: list[_Msg], t: np.ndarray, tol: float, joints, field: str) -> np.ndarray:
    """(K, n) of JointState ``field`` matched to rows by stamp; the later message wins a row."""
    out = np.full((len(t), len(joints)), np.nan)
    if not msgs:
        return out
    rows = _match_rows(t, np.array([_stamp(m.msg) for m in msgs]), tol)
    for m, r in zip(msgs, rows):
        if r >= 0:
            out[r] = _ordered(list(m.msg.name), getattr(m.msg, field), joints)
    return out


def _in_force(times: np.ndarray, values: list, at: np.ndarray, width: int) -> np.ndarray:
    """(K, width): the last of ``values`` with ``times`` <= each of ``at`` (NaN before the first)."""
    out = np.full((len(at), width), np.nan)
    if not len(times):
        return out
    order = np.argsort(times, kind="stable")
    times = times[order]
    idx = np.searchsorted(times, at, side="right") - 1
    for k, i in enumerate(idx):
        if i >= 0:
            v = np.asarray(values[order[i]], dtype=float)
            out[k, :min(width, len(v))] = v[:width]
    return out


#: The command indices tried around the expected one, nearest first.
SEARCH_STEPS = (0,) + tuple(x for d in range(1, 51) for x in (-d, d))


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def pair_commands(commands: list[_Msg], applied: list[_Msg], bases: list[_Msg] = (),
                  order: Sequence[str] | None = None, limits: tuple | None = None) -> list[tuple[float, np.ndarray]]:
    """(stamp, command data) pairs: each command with the applied residual the mixer published with it.

    The mixer publishes, once per output, ``commands`` (unstamped) and right
    after it ``~/applied_residual`` (stamped with the base action's stamp,
    effort = the mixed action minus the base action, before the command
    clip). Each topic arrives in publication order, so the i-th command goes
    with the i-th applied residual up to an offset: the recording may start
    or end between the two, and a message may be dropped. The offset starts as
    receipt order gives it (the commands received before the first applied
    residual) and is checked on content wherever the base action of the same
    stamp was recorded: the command must equal clip(a_base + applied) (the
    clip limits: ``limits`` (command_min, command_max) from the params, else
    an extreme of the recorded commands that two or more of them reach
    exactly, as a clip does). A mismatch tries the neighbouring commands (up
    to 50 away, never one already paired or before it) and moves the offset
    to the one that fits; an applied residual
    that none fits is left unpaired (its row's command is NaN; its command
    counts as dropped), so a dropped message never shifts later rows. Without its base action, a pair is
    taken on the offset alone. ``order``: the joints of the commands (the
    mixer's order).
    """
    cmds = sorted(commands, key=lambda m: (m.log_ns, m.order))
    apps = sorted(applied, key=lambda m: (m.log_ns, m.order))
    if not cmds or not apps:
        return []
    data = [np.asarray(m.msg.data, dtype=float) for m in cmds]
    width = max(len(d) for d in data)
    mat = np.full((len(data), width), np.nan)
    for i, d in enumerate(data):
        mat[i, :len(d)] = d
    if limits is not None:
        lo, hi = (np.asarray(x, dtype=float) for x in limits)
    else:
        lo, hi = np.nanmin(mat, axis=0), np.nanmax(mat, axis=0)
        lo = np.where(np.sum(mat == lo, axis=0) >= 2, lo, -np.inf)
        hi = np.where(np.sum(mat == hi, axis=0) >= 2, hi, np.inf)
    names = list(order) if order is not None else list(apps[0].msg.name)
    base_by_stamp = {_stamp_ns(m.msg): m.msg for m in bases}
    first = (apps[0].log_ns, apps[0].order)
    offset = sum(1 for m in cmds if (m.log_ns, m.order) <= first) - 1  # -1: none before it
    pairs = []
    last = -1
    for j, app in enumerate(apps):
        base = base_by_stamp.get(_stamp_ns(app.msg))
        expected = j + offset
        if base is None:
            if last < expected < len(cmds):
                pairs.append((_stamp(app.msg), data[expected]))
                last = expected
            continue
        target = (_ordered(list(app.msg.name), app.msg.effort, names)
                  + _ordered(list(base.name), base.effort, names))
        target = np.clip(target, lo[:len(target)], hi[:len(target)])
        for step in SEARCH_STEPS:
            i = expected + step
            if last < i < len(cmds) and len(data[i]) == len(target) and np.allclose(
                    data[i], target, rtol=1e-9, atol=1e-9):
                pairs.append((_stamp(app.msg), data[i]))
                offset, last = i - j, i
                break
        else:
            offset -= 1  # its command was dropped: the next applied residual expects the same index
    return pairs


def read_episode(path: str | Path, *, joints: Sequence[str] | None = None, params_text: str | None = None) -> Episode:
    """Read a recorded bag (a folder, or an ``.mcap``/``.db3`` file) into an :class:`Episode`.

    Rows are the distinct joint_states stamps (increasing; a repeated or
    older stamp is dropped). Aligned on them:

    * ``base_action``, ``residual_action``, ``expert_action`` and the mixer's
      ``applied_residual``: by header stamp (each carries the stamp of the
      joint state it was computed from), nearest row within a quarter period;
    * ``commands`` (unstamped): paired with the applied residual the mixer
      published right after it (:func:`pair_commands`), so a command lands in
      the row of its base action's stamp;
    * ``reference``: the last one whose stamp is at or before ``t[k]``;
    * ``perception`` (unstamped): the last one received before the joint
      state of row ``k`` was received (receipt order in the bag);
    * ``mode``: (receipt time s, text) in receipt order.

    ``joints``: the robot's joints; a bag of other joints is refused. The
    bag's joints come from its custom_data, else from the applied residual's
    names (the mixer's order), else from joint_states. ``params_text``: the
    params file the caller runs; a bag recorded with different parameters is
    refused naming the differing keys (a bag without the params in its
    metadata, as ``ros2 bag record`` writes it, cannot be checked and is read).

    ``metadata``: ``bag_path``, ``bag_sha256`` ({file: sha256}),
    ``storage``, ``custom_data``, ``topics`` ({topic: message count}) and
    the keys of :data:`METADATA_KEYS` (``unknown`` without custom_data).
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: expected a rosbag2 bag (folder or .mcap/.db3 file), found nothing")
    files = bag_files(path)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise BagError(f"{path}: expected the storage files of metadata.yaml, found {missing} missing")
    custom, msgs, types, _ = _read_all(path)

    required = [t.name for t in TOPICS if t.required]
    absent = [name for name in required if not msgs.get(name)]
    if absent:
        found = {k: len(v) for k, v in msgs.items()}
        raise BagError(f"{path}: expected messages on the required topics {required}, found none on {absent} "
                       f"(topics with messages: {found or 'none'}; types in the bag: {sorted(types) or 'none'})")
    for t in TOPICS:
        if t.name in types and types[t.name] != t.msgtype:
            raise BagError(f"{path}: topic {t.name}: expected type {t.msgtype}, found {types[t.name]}")

    bag_joints = _bag_joints(custom, msgs)
    if joints is not None:
        joints = tuple(joints)
        if set(joints) != set(bag_joints) or len(joints) != len(bag_joints):
            robot = custom.get(META_ROBOT, UNKNOWN)
            raise BagError(f"{path}: expected a bag of the joints {list(joints)}, found one of {list(bag_joints)} "
                           f"(robot {robot}): a recording of another robot")
    else:
        joints = tuple(bag_joints)
    found_params = custom.get(META_PARAMS, UNKNOWN)
    if params_text is not None and found_params != UNKNOWN:
        diff = params_differences(params_text, found_params)
        if diff:
            shown = diff[:12] + ([f"... {len(diff) - 12} more"] if len(diff) > 12 else [])
            raise BagError(f"{path}: expected a bag recorded with the given params file, found one recorded with "
                           f"different parameters: {shown}")

    limits = _command_limits(found_params if found_params != UNKNOWN else params_text, len(bag_joints))
    episode = _align(msgs, joints, list(bag_joints), limits)
    episode.metadata = {
        "source": "bag", "bag_path": str(path.resolve()), "bag_sha256": bag_sha256(path),
        "storage": "mcap" if any(f.suffix == ".mcap" for f in files) else "sqlite3",
        "custom_data": custom, "topics": {k: len(v) for k, v in msgs.items()},
        **{k: custom.get(v, UNKNOWN) for k, v in METADATA_KEYS.items()},
    }
    return episode


def _bag_joints(custom: Mapping[str, str], msgs: Mapping[str, list[_Msg]]) -> tuple[str, ...]:
    text = custom.get(META_JOINTS, UNKNOWN)
    if text != UNKNOWN:
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            names = [s.strip() for s in text.split(",") if s.strip()]
        if names:
            return tuple(str(n) for n in names)
    for topic in ("residual_mixer/applied_residual", "joint_states"):
        for m in msgs.get(topic, []):
            if len(m.msg.name):
                return tuple(m.msg.name)
    return ()


def _command_limits(params_text: str | None, n: int) -> tuple | None:
    """(command_min, command_max) of residual_mixer in a params file's text; None where it has none."""
    if not params_text:
        return None
    try:
        from ..params_file import node_params

        mixer = node_params(yaml.safe_load(params_text) or {}, "residual_mixer", defaults=False)
        lo = np.asarray(mixer["command_min"], dtype=float).reshape(-1)
        hi = np.asarray(mixer["command_max"], dtype=float).reshape(-1)
    except Exception:  # the limits only sharpen the pairing check; without them it estimates them
        return None
    return (lo, hi) if lo.shape == hi.shape == (n,) else None


def _align(msgs: Mapping[str, list[_Msg]], joints: tuple[str, ...], command_order: list[str],
           limits: tuple | None = None) -> Episode:
    n = len(joints)
    states = sorted(msgs["joint_states"], key=lambda m: (_stamp(m.msg), m.order))
    keep, t_list, last = [], [], -math.inf
    for m in states:
        s = _stamp(m.msg)
        if s > last:
            keep.append(m)
            t_list.append(s)
            last = s
    t = np.array(t_list, dtype=float)
    t_ns = np.array([_stamp_ns(m.msg) for m in keep], dtype=np.int64)
    k = len(t)
    dt = float(np.median(np.diff(t))) if k > 1 else 1.0
    tol = 0.25 * dt
    q = np.array([_ordered(list(m.msg.name), m.msg.position, joints) for m in keep]).reshape(k, n)
    qd = np.array([_ordered(list(m.msg.name), m.msg.velocity, joints) for m in keep]).reshape(k, n)

    refs = msgs.get("reference", [])
    ref_t = np.array([_stamp(m.msg) for m in refs])
    q_ref = _in_force(ref_t, [_ordered(list(m.msg.name), m.msg.position, joints) for m in refs], t, n)
    qd_ref = _in_force(ref_t, [_ordered(list(m.msg.name), m.msg.velocity, joints) for m in refs], t, n)
    ref_stamp = _in_force(ref_t, [[s if s > 0 else np.nan] for s in ref_t], t, 1)[:, 0]  # stamp 0: unstamped
    # the reference acceleration a node held with each message: over every message as received, in order
    acc = ReferenceAcceleration(n)
    qdd_msgs = []
    for m, s in zip(refs, ref_t):
        pos, vel = (_ordered(list(m.msg.name), v, joints) for v in (m.msg.position, m.msg.velocity))
        if np.all(np.isfinite(pos)) and np.all(np.isfinite(vel)):  # a node refuses any other (read_reference)
            qdd_msgs.append(acc.update(vel, s).copy())
        else:
            qdd_msgs.append(np.full(n, np.nan))
    qdd_ref = _in_force(ref_t, qdd_msgs, t, n)

    a_base = _stamped_rows(msgs.get("base_action", []), t, tol, joints, "effort")
    applied = _stamped_rows(msgs["residual_mixer/applied_residual"], t, tol, joints, "effort")
    residual = _stamped_rows(msgs["residual_action"], t, tol, joints, "effort") if msgs.get("residual_action") else None
    expert = _stamped_rows(msgs["expert_action"], t, tol, joints, "effort") if msgs.get("expert_action") else None

    command = np.full((k, n), np.nan)
    pairs = pair_commands(msgs["commands"], msgs["residual_mixer/applied_residual"], msgs.get("base_action", []),
                          command_order, limits)
    if pairs:
        rows = _match_rows(t, np.array([s for s, _ in pairs]), tol)
        for (_, data), r in zip(pairs, rows):
            if r >= 0:
                command[r] = _ordered(command_order, data, joints)

    perception = None
    perception_messages = None
    if msgs.get("perception"):
        per = sorted(msgs["perception"], key=lambda m: (m.log_ns, m.order))
        # A message the recorder logged before its clock ran (use_sim_time, no /clock yet) reads 0: it came
        # before the first one it logged on the running clock, the latest time it can have been received
        # (a perception 0.7 s old by its 0 would read as lost at the log's first rows).
        started = min((m.log_ns for topic in msgs.values() for m in topic if m.log_ns > 0), default=0)

        def receipt(m: _Msg) -> int:
            return m.log_ns if m.log_ns > 0 else started

        perception_messages = [(receipt(m) * 1e-9, [float(x) for x in m.msg.data]) for m in per]
        width = max(len(m.msg.data) for m in per)
        state_receipt = np.array([receipt(m) for m in keep], dtype=float)
        perception = _in_force(np.array([receipt(m) for m in per], dtype=float),
                               [np.asarray(m.msg.data, dtype=float) for m in per], state_receipt, width)
    modes = [(m.log_ns * 1e-9, str(m.msg.data)) for m in sorted(msgs.get("residual_mixer/mode", []),
                                                                 key=lambda m: (m.log_ns, m.order))]
    return Episode(joints=joints, t=t, q=q, qd=qd, q_ref=q_ref, qd_ref=qd_ref, command=command, a_base=a_base,
                   applied_residual=applied, residual=residual, perception=perception, expert=expert, modes=modes,
                   reference_stamp=ref_stamp, perception_messages=perception_messages, qdd_ref=qdd_ref,
                   t_ns=t_ns)


def list_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """{topic: (type, message count)} of a bag, as rosbags reads its metadata."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}


def read_episodes(paths: Iterable[str | Path], **kwargs) -> list[Episode]:
    """:func:`read_episode` of every bag; ``paths`` may hold folders of bags (each subfolder with metadata.yaml)."""
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir() and not (p / "metadata.yaml").exists():
            subs = sorted(d for d in p.iterdir() if (d / "metadata.yaml").exists())
            if not subs:
                raise BagError(f"{p}: expected a bag or a folder of bags (with metadata.yaml), found neither")
            out += [read_episode(d, **kwargs) for d in subs]
        else:
            out.append(read_episode(p, **kwargs))
    return out
