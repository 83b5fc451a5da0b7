"""Corrupted recordings given to ``handypriors track`` and ``sequence_player``, and signals during ``track``.

Damage at the start of a recording (truncated mcap, a damaged sqlite3 header page) and missing or mistyped
streams (a topic with the expected name but another message type, no camera info, no joint states) end with
one ``error:`` line and exit status 2. Damage in the middle (an mcap chunk whose checksum fails, a damaged sqlite3
page) keeps the frames before it: ``track`` writes their poses and names the images it could not read (exit
status 2); the player publishes the messages before it and stops with one line (exit status 2). Ctrl-C
(SIGINT) and SIGTERM during ``track`` leave a valid ``poses.json`` with the frames done (exit status 130).

The recordings are rig bags of :mod:`test_bag_reader` (160x120 noise images, 16UC1 depth, joint states, TF).
The mcap writer of rosbags leaves chunk checksums at 0 (unchecked); a real recorder writes them, so the helper
below fills them in before damaging a chunk.
"""

from __future__ import annotations

import binascii
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bag_reader import TS, Rig, write_rig_bag
from test_cli import write_test_config

from handypriors_core import cli
from handypriors_core.io import read_poses
from handypriors_core.io.bag_settings import BagTopics

REPO = Path(__file__).resolve().parents[1]
SIZE = (160, 120)
K = [200.0, 0.0, 79.5, 0.0, 200.0, 59.5, 0.0, 0.0, 1.0]
FRAMES = 24  # about 11 frames per 1 MiB mcap chunk: chunks hold frames 0-10, 11-21, 22-23
INITIAL = "0.0,0.0,0.4,0.0,0.0,0.0,1.0"


# ------------------------------------------------------------------------------------------ damaging bags
def _mcap_chunks(data: bytes) -> list[tuple[int, int]]:
    """``(offset, length)`` of the chunk records (opcode 0x06) of an mcap file."""
    chunks, offset = [], 8
    while offset < len(data) - 8:
        opcode, length = data[offset], struct.unpack_from("<Q", data, offset + 1)[0]
        if opcode == 0x06:
            chunks.append((offset, length))
        if opcode == 0x0F:  # footer
            break
        offset += 9 + length
    return chunks


def damage_mcap_chunk(bag: Path, chunk: int) -> None:
    """Write every chunk's CRC (as a recorder does), then overwrite 100 bytes inside chunk ``chunk``."""
    path = next(bag.glob("*.mcap"))
    data = bytearray(path.read_bytes())
    chunks = _mcap_chunks(data)
    assert len(chunks) > chunk + 1, f"the bag has {len(chunks)} chunks"
    for offset, length in chunks:  # record: start, end, uncompressed size, crc, compression, compressed size, data
        name_length = struct.unpack_from("<I", data, offset + 9 + 28)[0]
        start = offset + 9 + 32 + name_length + 8
        struct.pack_into("<I", data, offset + 9 + 24, binascii.crc32(bytes(data[start:offset + 9 + length])))
    offset = chunks[chunk][0]
    data[offset + 600:offset + 700] = b"\xa5" * 100
    path.write_bytes(bytes(data))


def damage_sqlite_page(bag: Path, fraction: float) -> None:
    """Overwrite the 4 KiB page at ``fraction`` of the ``.db3`` file (page 0 is the database header)."""
    path = next(bag.glob("*.db3"))
    data = bytearray(path.read_bytes())
    offset = int(len(data) * fraction) // 4096 * 4096
    data[offset:offset + 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))


def rewrite_bag(source: Path, target: Path, drop: tuple[str, ...] = (), as_string: tuple[str, ...] = (),
                edit: dict | None = None) -> Path:
    """A copy of ``source`` without the topics ``drop``; the topics ``as_string`` keep their name but carry
    ``std_msgs/msg/String`` messages; ``edit[topic](index, msg)`` changes that topic's messages in place."""
    from rosbags.rosbag2 import Reader, Writer

    edit = edit or {}
    with Reader(source) as reader, Writer(target, version=8) as writer:
        out = {}
        for c in reader.connections:
            if c.topic in drop:
                continue
            msgtype = "std_msgs/msg/String" if c.topic in as_string else c.msgtype
            out[c.id] = writer.add_connection(c.topic, msgtype, typestore=TS)
        string = TS.types["std_msgs/msg/String"]
        counts: dict[str, int] = {}
        for c, t, raw in reader.messages():
            if c.id not in out:
                continue
            if c.topic in as_string:
                raw = TS.serialize_cdr(string(data="not an image"), "std_msgs/msg/String")
            elif c.topic in edit:
                msg = TS.deserialize_cdr(raw, c.msgtype)
                edit[c.topic](counts.setdefault(c.topic, 0), msg)
                counts[c.topic] += 1
                raw = TS.serialize_cdr(msg, c.msgtype)
            writer.write(out[c.id], t, raw)
    return target


DEFAULTS = BagTopics()  # the configured topic names: the rig bags use them
RIG_TOPICS = {"image": DEFAULTS.image, "info": DEFAULTS.camera_info, "depth": DEFAULTS.depth,
              "joints": DEFAULTS.joint_states}


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corrupted")
    import trimesh

    mesh = root / "box.obj"
    trimesh.creation.box(extents=[0.04, 0.06, 0.09]).export(mesh)
    return {"root": root, "mesh": mesh, "config": write_test_config(root / "tracking.yaml"),
            "mcap": write_rig_bag(root / "mcap", Rig(frames=FRAMES), camera_k=K, size=SIZE, topics=RIG_TOPICS),
            "sqlite3": write_rig_bag(root / "sqlite3", Rig(frames=FRAMES), camera_k=K, size=SIZE, storage="sqlite3",
                                     topics=RIG_TOPICS)}


def _copy(rig: dict, storage: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(rig[storage], tmp_path / f"bag_{storage}"))


def _track(rig: dict, bag: Path, out: Path, *extra: str) -> list[str]:
    return ["track", str(bag), "--object-mesh", str(rig["mesh"]), "--initial-pose", INITIAL, "--out", str(out),
            "--config", str(rig["config"]), "--mode", "filter", "--mask-source", "none", "--no-progress", *extra]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -------------------------------------------------------------------------------------------------- track
def _broken_at_start(rig: dict, tmp_path: Path, case: str) -> tuple[Path, str]:
    if case == "truncated mcap":
        data = next(rig["mcap"].glob("*.mcap")).read_bytes()
        broken = tmp_path / "truncated.mcap"
        broken.write_bytes(data[: int(len(data) * 0.6)])
        return broken, "truncated.mcap"
    if case == "sqlite3 header page":
        bag = _copy(rig, "sqlite3", tmp_path)
        damage_sqlite_page(bag, 0.0)
        return bag, "bag_sqlite3"
    if case == "image topic of another type":
        bag = rewrite_bag(rig["mcap"], tmp_path / "string_image", as_string=(DEFAULTS.image,))
        return bag, f"topic {DEFAULTS.image} is a std_msgs/msg/String, not a colour image"
    if case == "joint states of another type":
        bag = rewrite_bag(rig["mcap"], tmp_path / "string_joints", as_string=(DEFAULTS.joint_states,))
        return bag, f"topic {DEFAULTS.joint_states} is a std_msgs/msg/String, not a joint states"
    if case == "no camera info":
        return rewrite_bag(rig["mcap"], tmp_path / "no_info", drop=(DEFAULTS.camera_info,)), "no camera info"
    assert case == "no joint states"
    return rewrite_bag(rig["mcap"], tmp_path / "no_joints", drop=(DEFAULTS.joint_states,)), "no joint states"


@pytest.mark.parametrize("case", ["truncated mcap", "sqlite3 header page", "image topic of another type",
                                  "joint states of another type", "no camera info", "no joint states"])
def test_track_refuses_a_broken_recording_with_one_line(rig, tmp_path, capsys, case):
    bag, words = _broken_at_start(rig, tmp_path, case)
    out = tmp_path / "poses.json"
    assert cli.main(_track(rig, bag, out)) == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert line.startswith("handypriors track: error: ") and words in line, line
    assert not out.exists()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_track_keeps_the_frames_before_damage_in_the_middle(rig, tmp_path, capsys, storage):
    bag = _copy(rig, storage, tmp_path)
    if storage == "mcap":
        damage_mcap_chunk(bag, 1)  # frames 11-21
    else:
        damage_sqlite_page(bag, 0.5)
    out = tmp_path / "poses.json"
    assert cli.main(_track(rig, bag, out)) == cli.EXIT_USAGE
    line = _error_line(capsys)
    match = re.search(r"images (\d+)-(\d+) of (\d+) not read", line)
    assert match and "damaged" in line, line
    first, last, total = map(int, match.groups())
    assert (last, total) == (FRAMES - 1, FRAMES) and 4 <= first < FRAMES - 2, line
    poses = read_poses(out)  # valid: the frames before the damage, every one tracked
    assert [p.frame for p in poses.poses] == list(range(first)), [p.frame for p in poses.poses]
    assert not list(tmp_path.glob(".poses.json.partial"))


def test_one_undecodable_image_is_skipped_not_fatal(rig, tmp_path, capsys):
    """A message whose image data is cut short costs that frame only."""
    def cut_short(index, msg):
        if index == 2:  # frame 2: a data array of 10 bytes
            msg.data = msg.data[:10]

    target = rewrite_bag(rig["mcap"], tmp_path / "short_image", edit={DEFAULTS.image: cut_short})
    poses = tmp_path / "poses.json"
    assert cli.main(_track(rig, target, poses, "--max-frames", "5")) == 0
    err = capsys.readouterr().err
    assert "1 image(s) could not be tracked" in err and "10 bytes" in err, err
    records = read_poses(poses).poses
    assert [p.frame for p in records] == [0, 1, 2, 3, 4] and records[2].status == "lost"


def test_no_trackable_image_is_an_error(rig, tmp_path, capsys):
    """Every image refused (camera info of another size): one line, exit status 2, not an empty success."""
    def smaller(index, msg):
        msg.width, msg.height = 80, 60

    target = rewrite_bag(rig["mcap"], tmp_path / "small_info", edit={DEFAULTS.camera_info: smaller})
    assert cli.main(_track(rig, target, tmp_path / "poses.json", "--max-frames", "3")) == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert "no image could be tracked" in line and "is 80x60 but the images" in line and "160x120" in line, line


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_track_leaves_a_valid_poses_file(rig, tmp_path, signum):
    out = tmp_path / "poses.json"
    # refine mode with a fixed number of Adam steps per frame (no early stop, no time budget): each frame takes long
    # enough that the signal always lands mid-sequence, however fast the filter alone gets (it tracks this
    # 160x120 rig at 50 frames/s, faster than the test can read the progress line and send the signal)
    slow = write_test_config(tmp_path / "slow.yaml", iterations=20, converged_iterations=20,
                             convergence_tolerance=0.0)
    args = _track({**rig, "config": slow}, rig["mcap"], out)
    args[args.index("--mode") + 1] = "refine"
    args.remove("--no-progress")  # progress lines (every 10 % off a terminal) tell how far it got
    process = subprocess.Popen([sys.executable, "-m", "handypriors_core.cli", *args], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(REPO)))
    lines = []
    deadline = time.monotonic() + 120
    try:
        for line in process.stderr:  # wait until at least 3 frames are done
            lines.append(line)
            done = re.search(r"\] (\d+)/\d+", line)
            if done and int(done.group(1)) >= 3:
                break
            assert time.monotonic() < deadline, "".join(lines)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    stderr = "".join(lines) + stderr
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    assert "interrupted after" in stderr and "Traceback" not in stderr, stderr
    frames = [p.frame for p in read_poses(out).poses]
    assert 3 <= len(frames) < FRAMES and frames == list(range(len(frames))), frames
    assert f"wrote poses: {out}" in stdout


# ------------------------------------------------------------------------------------------ sequence_player
@pytest.mark.parametrize("case", ["truncated mcap", "sqlite3 header page", "image topic of another type",
                                  "joint states of another type", "no camera info", "no joint states"])
def test_player_refuses_a_broken_recording(rig, tmp_path, case):
    from handypriors_core.errors import InvalidValueError
    from handypriors_ros.playback_sources import TopicNames, open_source

    bag, _ = _broken_at_start(rig, tmp_path, case)
    if case == "truncated mcap":  # the player takes a bag folder
        folder = tmp_path / "truncated"
        shutil.copytree(rig["mcap"], folder)
        next(folder.glob("*.mcap")).write_bytes(bag.read_bytes())
        bag = folder
    words = {"truncated mcap": "cannot open rosbag2", "sqlite3 header page": "cannot open rosbag2",
             "image topic of another type": f"{DEFAULTS.image} is a std_msgs/msg/String",
             "joint states of another type": f"{DEFAULTS.joint_states} is a std_msgs/msg/String",
             "no camera info": "no colour camera info", "no joint states": "no joint states"}[case]
    with pytest.raises(InvalidValueError) as info:
        source = open_source(bag, TopicNames())
        source.close()
    assert words in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_player_publishes_up_to_a_damaged_chunk_then_exits_2(rig, tmp_path, ros_env):
    from handypriors_core.errors import InvalidValueError
    from handypriors_ros.playback_sources import TopicNames, open_source

    bag = _copy(rig, "mcap", tmp_path)
    damage_mcap_chunk(bag, 1)
    source = open_source(bag, TopicNames())
    played = []
    with pytest.raises(InvalidValueError, match=r"is damaged after (\d+) messages") as info:
        played.extend(source.events())
    source.close()
    count = int(re.search(r"after (\d+) messages", str(info.value)).group(1))
    images = [e for e in played if e.messages[0][0] == TopicNames().color]
    assert count == len(played) and 4 <= len(images) < FRAMES - 2, (count, len(images))
    # the node: one log line and exit status 2
    process = subprocess.run([sys.executable, "-m", "handypriors_ros.sequence_player", "--ros-args", "-p",
                              f"source:={bag}", "-p", "rate:=0.0"], cwd=REPO, env=dict(ros_env, PYTHONPATH=str(REPO)),
                             capture_output=True, text=True, timeout=120, check=False)
    output = process.stdout + process.stderr
    assert process.returncode == 2, output
    assert "damaged after" in output and "Traceback" not in output, output
