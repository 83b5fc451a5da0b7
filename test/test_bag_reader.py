"""BagReader: topics (configured, picked by type, explicit), joint-state and TF interpolation to image stamps,
depth pairing, storage formats, and one-line errors for broken inputs.

``write_rig_bag`` (also used by the CLI tests) writes what a real Allegro + RealSense rig records: colour,
camera info, aligned 16UC1 depth, joint states at 3x the image rate (offset from the image stamps) and TF
(static camera mount + the hand base on a moving arm at 2x the image rate, also offset), so that every value at
an image stamp must come from interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from handypriors_core.errors import ConfigError, HandyPriorsError, JointNameError
from handypriors_core.io.bag_files import BagError, MissingTopicError, find_bags, open_bag
from handypriors_core.io.bag_reader import BagReader
from handypriors_core.io.bag_settings import BagTopics

TS = get_typestore(Stores.ROS2_HUMBLE)
T = TS.types
S = 1_000_000_000
T0 = 1_700_000_000 * S
URDF_JOINTS = [f"joint_{i}.0" for i in range(16)]
MENAGERIE = [f"{f}j{j}" for f in ("ff", "mf", "rf", "th") for j in range(4)]
OPTICAL = "camera_color_optical_frame"
K = [100.0, 0.0, 39.5, 0.0, 100.0, 29.5, 0.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------------ messages
def header(stamp_ns: int, frame_id: str = ""):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // S, nanosec=stamp_ns % S),
                                    frame_id=frame_id)


def image_msg(stamp_ns: int, array: np.ndarray, encoding: str, frame_id: str = OPTICAL):
    h, w = array.shape[:2]
    data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    return T["sensor_msgs/msg/Image"](header=header(stamp_ns, frame_id), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=data.size // h, data=data)


def info_msg(stamp_ns: int, k: Sequence[float], width: int, height: int, frame_id: str = OPTICAL):
    p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return T["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.asarray(k, dtype=np.float64), r=np.eye(3).reshape(-1), p=np.asarray(p), binning_x=0,
        binning_y=0, roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                              do_rectify=False))


def joint_msg(stamp_ns: int, names: Sequence[str], positions: Sequence[float]):
    n = len(names)
    return T["sensor_msgs/msg/JointState"](header=header(stamp_ns), name=list(names),
                                           position=np.asarray(positions, dtype=np.float64), velocity=np.zeros(n),
                                           effort=np.zeros(n))


def tf_msg(items: list[tuple[str, str, int, np.ndarray]]):
    out = []
    for parent, child, stamp_ns, M in items:
        q = Rotation.from_matrix(M[:3, :3]).as_quat()
        out.append(T["geometry_msgs/msg/TransformStamped"](
            header=header(stamp_ns, parent), child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=M[0, 3], y=M[1, 3], z=M[2, 3]),
                rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))))
    return T["tf2_msgs/msg/TFMessage"](transforms=out)


def rigid(rotvec, t) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    M[:3, 3] = t
    return M


# ------------------------------------------------------------------------------------------------ a rig bag
class Rig:
    """A rig whose hand moves at constant velocity, so interpolated values have exact expected answers.

    ``hand2world(t) = [exp(t w) R0 | p0 + t v]`` (rotation about a fixed axis: slerp is exact),
    ``q(t) = q0 + t dq`` (linear: lerp is exact); the camera mount is static:
    ``optical2world = link2world @ optical2link``.
    """

    def __init__(self, frames: int = 4, fps: float = 10.0, hand2world0: np.ndarray | None = None,
                 omega=(0.0, 0.3, 0.1), velocity=(0.02, 0.0, -0.01), q0: np.ndarray | None = None,
                 dq: np.ndarray | None = None, link2world: np.ndarray | None = None,
                 optical2link: np.ndarray | None = None) -> None:
        self.frames, self.fps = frames, fps
        self.dt = round(S / fps)
        self.hand2world0 = hand2world0 if hand2world0 is not None else rigid([0.1, -0.2, 0.3], [0.05, 0.02, 0.4])
        self.omega, self.velocity = np.asarray(omega), np.asarray(velocity)
        self.q0 = q0 if q0 is not None else np.linspace(0.0, 0.6, 16)
        self.dq = dq if dq is not None else np.linspace(0.1, -0.1, 16)
        self.link2world = link2world if link2world is not None else rigid([0.0, 0.0, 0.2], [0.0, 0.0, 0.0])
        self.optical2link = optical2link if optical2link is not None else rigid([-math.pi / 2, 0, -math.pi / 2],
                                                                               [0.0, 0.015, 0.0])

    def image_stamp(self, i: int) -> int:
        return T0 + i * self.dt

    def hand2world(self, stamp_ns: int) -> np.ndarray:
        t = (stamp_ns - T0) * 1e-9
        M = np.eye(4)
        M[:3, :3] = Rotation.from_rotvec(self.omega * t).as_matrix() @ self.hand2world0[:3, :3]
        M[:3, 3] = self.hand2world0[:3, 3] + self.velocity * t
        return M

    def hand2camera(self, stamp_ns: int) -> np.ndarray:
        return np.linalg.inv(self.link2world @ self.optical2link) @ self.hand2world(stamp_ns)

    def joints(self, stamp_ns: int) -> np.ndarray:
        return self.q0 + self.dq * (stamp_ns - T0) * 1e-9


def write_rig_bag(path: Path, rig: Rig, images: Callable[[int], tuple[np.ndarray, np.ndarray | None]] | None = None,
                  camera_k: Sequence[float] = K, storage: str = "mcap", joint_names: Sequence[str] = URDF_JOINTS,
                  topics: dict[str, str] | None = None, hand_frame: str = "hand_root", with_tf: bool = True,
                  extra: Callable[[Writer], None] | None = None, depth_offset_ns: int = 0,
                  joint_permutation: Sequence[int] | None = None, size: tuple[int, int] = (80, 60),
                  joints_until_ns: int | None = None, with_joints: bool = True) -> Path:
    """Write a rig recording; ``images(i) -> (rgb (H, W, 3) uint8, depth (H, W) float metres or None)``.

    Joint states: 3 per image period, at image stamp - dt/3, + 0, + dt/3 ... shifted by dt/6 so no sample hits an
    image stamp; /tf: 2 per period at +dt/4 and +3dt/4 (and one before the first image).
    """
    topics = {"image": "/camera/color/image_raw", "info": "/camera/color/camera_info",
              "depth": "/camera/aligned_depth_to_color/image_raw", "joints": "/allegroHand/joint_states",
              **(topics or {})}
    w, h = size
    if images is None:
        rng = np.random.default_rng(0)

        def images(i):
            rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            depth = np.full((h, w), 0.4 + 0.01 * i, dtype=np.float32)
            depth[0, 0] = np.nan
            return rgb, depth

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    perm = list(joint_permutation) if joint_permutation is not None else list(range(16))
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        c_img = writer.add_connection(topics["image"], "sensor_msgs/msg/Image", typestore=TS)
        c_info = writer.add_connection(topics["info"], "sensor_msgs/msg/CameraInfo", typestore=TS)
        c_depth = writer.add_connection(topics["depth"], "sensor_msgs/msg/Image", typestore=TS) if topics["depth"] \
            else None
        c_joints = writer.add_connection(topics["joints"], "sensor_msgs/msg/JointState", typestore=TS) \
            if with_joints else None
        c_static = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=TS)
        c_tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=TS)
        if extra is not None:
            extra(writer)
        msgs: list[tuple[int, object, object]] = []
        dt = rig.dt
        if with_tf:
            msgs.append((T0 - dt, c_static, tf_msg([("world", "camera_link", 0, rig.link2world),
                                                     ("camera_link", OPTICAL, 0, rig.optical2link)])))
        for i in range(rig.frames):
            t = rig.image_stamp(i)
            rgb, depth = images(i)
            msgs.append((t, c_img, image_msg(t, rgb, "rgb8")))
            msgs.append((t, c_info, info_msg(t, camera_k, rgb.shape[1], rgb.shape[0])))
            if depth is not None and c_depth is not None:
                raw = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0).astype(np.uint16)
                msgs.append((t + depth_offset_ns, c_depth, image_msg(t + depth_offset_ns, raw, "16UC1")))
        first, last = rig.image_stamp(0) - dt, rig.image_stamp(rig.frames - 1) + dt
        for k in range(int((last - first) / (dt / 3)) + 1):
            t = first + dt // 6 + k * dt // 3
            if c_joints is None or (joints_until_ns is not None and t > joints_until_ns):
                break
            q = rig.joints(t)
            msgs.append((t, c_joints, joint_msg(t, [joint_names[j] for j in perm], q[perm])))
        if with_tf:
            for k in range(int((last - first) / (dt / 2)) + 1):
                t = first + dt // 4 + k * dt // 2
                msgs.append((t, c_tf, tf_msg([("world", hand_frame, t, rig.hand2world(t))])))
        msgs.sort(key=lambda m: m[0])
        for t, conn, msg in msgs:
            writer.write(conn, t, TS.serialize_cdr(msg, conn.msgtype))
    return path


# ------------------------------------------------------------------------------------------------ tests
def test_frames_interpolate_joints_and_tf_to_image_stamps(tmp_path):
    rig = Rig(frames=4)
    bag = write_rig_bag(tmp_path / "rig", rig, joint_names=MENAGERIE, joint_permutation=[3, 1, 2, 0] + list(
        range(4, 16))[::-1])
    lines = []
    with BagReader(bag, URDF_JOINTS, report=lines.append, dtype=torch.float64) as reader:
        assert reader.joint_map.name == "menagerie"
        assert any("joint map: menagerie" in line for line in lines)
        assert reader.image_topic == "/camera/color/image_raw" and reader.depth_topic is not None
        assert reader.camera_frame == OPTICAL and reader.num_images == 4
        frames = list(reader.frames())
    assert [bf.index for bf in frames] == [0, 1, 2, 3]
    for bf in frames:
        t = rig.image_stamp(bf.index)
        f = bf.frame
        assert f is not None and bf.stamp_ns == t and f.stamp == pytest.approx(t * 1e-9)
        np.testing.assert_allclose(f.joint_angles.numpy(), rig.joints(t), atol=1e-9)
        np.testing.assert_allclose(f.hand2camera.numpy(), rig.hand2camera(t), atol=1e-9)
        assert f.rgb.shape == (60, 80, 3) and f.rgb.dtype == torch.uint8
        assert f.depth is not None and math.isnan(float(f.depth[0, 0]))
        assert float(f.depth[5, 5]) == pytest.approx(0.4 + 0.01 * bf.index, abs=6e-4)
        np.testing.assert_allclose(f.camera.K.numpy().reshape(-1), K, atol=1e-5)
        assert f.joint_names == tuple(URDF_JOINTS)


def test_sqlite3_and_single_file_storage(tmp_path):
    rig = Rig(frames=2)
    db_bag = write_rig_bag(tmp_path / "db", rig, storage="sqlite3")
    mcap_bag = write_rig_bag(tmp_path / "mc", rig)
    single_mcap = next(mcap_bag.glob("*.mcap"))
    single_db = next(db_bag.glob("*.db3"))
    for path in (db_bag, single_mcap, single_db):
        with BagReader(path, URDF_JOINTS, dtype=torch.float64) as reader:
            frames = list(reader.frames())
        assert len(frames) == 2 and all(bf.frame is not None for bf in frames), path
        np.testing.assert_allclose(frames[1].frame.hand2camera.numpy(), rig.hand2camera(rig.image_stamp(1)),
                                   atol=1e-9)
    assert find_bags(tmp_path) == sorted([db_bag, mcap_bag])


def test_topics_picked_by_type_when_configured_ones_are_missing(tmp_path):
    rig = Rig(frames=2)
    bag = write_rig_bag(tmp_path / "rig", rig, topics={"image": "/cam/rgb/image", "info": "/cam/rgb/camera_info",
                                                       "depth": "/cam/depth_registered/image",
                                                       "joints": "/hand/joint_states"})
    lines = []
    with BagReader(bag, URDF_JOINTS, report=lines.append) as reader:
        assert (reader.image_topic, reader.camera_info_topic, reader.depth_topic, reader.joint_topic) == (
            "/cam/rgb/image", "/cam/rgb/camera_info", "/cam/depth_registered/image", "/hand/joint_states")
        assert len(list(reader.frames())) == 2
    text = "\n".join(lines)
    for topic in ("/cam/rgb/image", "/cam/rgb/camera_info", "/cam/depth_registered/image", "/hand/joint_states"):
        assert f"topic {topic}" in text
    # an explicitly named topic must exist
    with pytest.raises(MissingTopicError, match="no topic /nope"):
        BagReader(bag, URDF_JOINTS, BagTopics().override(image="/nope"))


def test_ambiguous_colour_topics_need_a_choice(tmp_path):
    rig = Rig(frames=1)

    def second_camera(writer):
        conn = writer.add_connection("/cam2/image", "sensor_msgs/msg/Image", typestore=TS)
        writer.write(conn, T0, TS.serialize_cdr(image_msg(T0, np.zeros((60, 80, 3), np.uint8), "bgr8"), conn.msgtype))

    bag = write_rig_bag(tmp_path / "rig", rig, topics={"image": "/cam1/image"}, extra=second_camera)
    with pytest.raises(MissingTopicError, match="several topics.*--image-topic"):
        BagReader(bag, URDF_JOINTS)
    with BagReader(bag, URDF_JOINTS, BagTopics().override(image="/cam2/image")) as reader:
        rgb = next(reader.frames()).frame
        assert rgb is not None and reader.image_topic == "/cam2/image"


def test_depth_pairing_tolerance(tmp_path):
    rig = Rig(frames=3)
    bag = write_rig_bag(tmp_path / "rig", rig, depth_offset_ns=8_000_000)  # 8 ms late
    with BagReader(bag, URDF_JOINTS) as reader:
        assert all(bf.frame.depth is not None for bf in reader.frames())
    with BagReader(bag, URDF_JOINTS, BagTopics(depth_tolerance_s=0.005)) as reader:
        assert all(bf.frame.depth is None for bf in reader.frames())
    with BagReader(bag, URDF_JOINTS, BagTopics(depth="")) as reader:
        assert reader.depth_topic is None and all(bf.frame.depth is None for bf in reader.frames())


def test_frames_outside_joint_data_are_reported_not_invented(tmp_path):
    rig = Rig(frames=3)
    bag = write_rig_bag(tmp_path / "rig", rig, joints_until_ns=rig.image_stamp(1) + rig.dt // 3)
    with BagReader(bag, URDF_JOINTS, BagTopics(max_gap_s=0.02)) as reader:  # samples every 33 ms: bracketed
        frames = list(reader.frames())
    assert frames[0].frame is not None and frames[1].frame is not None
    assert frames[2].frame is None and "no joint states" in frames[2].reason and frames[2].index == 2
    with BagReader(bag, URDF_JOINTS, BagTopics(max_gap_s=1.0)) as reader:  # generous: clamped to the last sample
        assert list(reader.frames())[2].frame is not None


def test_errors_are_one_line_typed(tmp_path):
    rig = Rig(frames=1)
    # unknown joint names
    bag = write_rig_bag(tmp_path / "names", rig, joint_names=[f"arm_joint_{i}" for i in range(16)])
    with pytest.raises(JointNameError, match="no joint map covers"):
        BagReader(bag, URDF_JOINTS)
    # no joint states at all
    bag = write_rig_bag(tmp_path / "nojoints", rig, with_joints=False)
    with pytest.raises(MissingTopicError, match="no joint states"):
        BagReader(bag, URDF_JOINTS)
    # no TF at all
    bag = write_rig_bag(tmp_path / "notf", rig, with_tf=False)
    with pytest.raises(MissingTopicError, match="no transforms"):
        BagReader(bag, URDF_JOINTS)
    # ... unless the hand mount is given
    mount = [0.01, 0.02, 0.3, 0.0, 0.0, math.sin(0.25), math.cos(0.25)]
    with BagReader(bag, URDF_JOINTS, BagTopics(hand2camera_override=mount), dtype=torch.float64) as reader:
        f = next(reader.frames()).frame
    np.testing.assert_allclose(f.hand2camera.numpy(), rigid([0, 0, 0.5], mount[:3]), atol=1e-12)
    with pytest.raises(ConfigError, match="hand2camera_override"):
        BagTopics(hand2camera_override=[1.0, 2.0])
    # wrong hand frame
    bag = write_rig_bag(tmp_path / "frame", rig, hand_frame="palm")
    with pytest.raises(BagError, match="hand frame 'hand_root' is not in the bag's TF tree.*--hand-frame"):
        BagReader(bag, URDF_JOINTS)
    with BagReader(bag, URDF_JOINTS, BagTopics(hand_frame="palm")) as reader:
        assert next(reader.frames()).frame is not None
    # corrupt bag: truncated mcap file
    good = write_rig_bag(tmp_path / "good", Rig(frames=3))
    data = next(good.glob("*.mcap")).read_bytes()
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match="broken.mcap") as info:
        BagReader(broken, URDF_JOINTS)
        list(BagReader(broken, URDF_JOINTS).frames())
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.db3"
    garbage.write_bytes(b"not a database" * 10)
    with pytest.raises(BagError, match="garbage.db3"):
        open_bag(garbage)
    with pytest.raises(BagError, match="not found"):
        open_bag(tmp_path / "missing")
    assert issubclass(BagError, HandyPriorsError)


def test_bag_settings_from_config(tmp_path):
    import yaml

    from handypriors_core.io.bag_settings import load_bag_settings

    path = tmp_path / "tracking.yaml"
    params = {"joint_map": "menagerie", "hand_root_frame": "palm", "camera_frame": "", "hand2camera_override": [],
              "tracking": {"mode": "filter"},
              "bag": {"topics": {"image": "/rgb", "depth": ""}, "max_gap_s": 0.05}}
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    s = load_bag_settings(path)
    assert (s.joint_map, s.hand_frame, s.image, s.depth, s.max_gap_s) == ("menagerie", "palm", "/rgb", "", 0.05)
    assert s.camera_info == BagTopics().camera_info and not s.explicit
    o = s.override(image="/other", depth=None)
    assert o.image == "/other" and o.depth == "" and o.explicit == {"image"}
    params["bag"]["topics"]["imagez"] = "/x"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    with pytest.raises(ConfigError, match="imagez"):
        load_bag_settings(path)
    assert load_bag_settings(None) == BagTopics()
