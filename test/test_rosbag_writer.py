"""SensorBagWriter: messages written with rosbags read back field by field (independent reader path)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.io.rosbag_writer import SensorBagWriter

T0 = 1_700_000_000_123_456_789


def _read(path):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    out = {}
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        for conn, t_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t_ns, ts.deserialize_cdr(raw, conn.msgtype)))
    return conns, out


def test_messages_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    depth = rng.integers(0, 60000, (6, 8)).astype(np.uint16)
    cam = PinholeCamera.from_camera_info([50.0, 0, 3.5, 0, 51.0, 2.5, 0, 0, 1], [0.1, -0.05, 0.001, 0.002, 0.01], 8, 6)
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 1.1], dtype=torch.float64))
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = R, torch.tensor([0.1, -0.2, 0.45])
    with SensorBagWriter(tmp_path / "bag", typestore="ROS2_HUMBLE") as bag:
        bag.transforms("/tf_static", T0, [("camera_color_optical_frame", "hand_root", T)], static=True)
        bag.image("/cam/color", T0, torch.from_numpy(rgb), "cam")
        bag.image("/cam/depth", T0, depth, "cam")
        bag.camera_info("/cam/info", T0, cam, "cam")
        bag.joint_state("/js", T0 + 5, ["a", "b"], [0.5, -1.5], velocity=np.array([1.0, 2.0]))
        bag.joint_state("/js", T0 + 10, ["a", "b"], [0.6, -1.4])
        bag.transforms("/tf", T0 + 10, [])
        assert bag.counts == {"/tf_static": 1, "/cam/color": 1, "/cam/depth": 1, "/cam/info": 1, "/js": 2, "/tf": 1}
    conns, got = _read(tmp_path / "bag")
    assert (tmp_path / "bag" / "metadata.yaml").is_file() and list((tmp_path / "bag").glob("*.mcap"))
    assert conns["/tf_static"].ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"
    assert conns["/tf_static"].ext.offered_qos_profiles[0].depth == 1
    assert conns["/tf"].ext.offered_qos_profiles == []

    t_ns, img = got["/cam/color"][0]
    assert t_ns == T0 and (img.header.stamp.sec, img.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert (img.encoding, img.height, img.width, img.step, img.is_bigendian) == ("rgb8", 6, 8, 24, 0)
    assert np.array_equal(img.data.reshape(6, 8, 3), rgb) and img.header.frame_id == "cam"
    _, dimg = got["/cam/depth"][0]
    assert (dimg.encoding, dimg.step) == ("16UC1", 16)
    assert np.array_equal(dimg.data.view("<u2").reshape(6, 8), depth)

    _, info = got["/cam/info"][0]
    assert (info.width, info.height, info.distortion_model) == (8, 6, "plumb_bob")
    assert np.allclose(info.k, cam.K.double().numpy().ravel()) and np.allclose(info.d, [0.1, -0.05, 0.001, 0.002, 0.01])
    assert np.allclose(info.p.reshape(3, 4), np.concatenate([cam.K.double().numpy(), np.zeros((3, 1))], 1))
    assert np.allclose(info.r, np.eye(3).ravel())

    (t1, js1), (t2, js2) = got["/js"]
    assert (t1, t2) == (T0 + 5, T0 + 10) and list(js1.name) == ["a", "b"]
    assert np.allclose(js1.position, [0.5, -1.5]) and np.allclose(js1.velocity, [1.0, 2.0]) and len(js1.effort) == 0
    assert len(js2.velocity) == 0

    tf = got["/tf_static"][0][1].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("camera_color_optical_frame", "hand_root")
    assert np.allclose([tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z],
                       [0.1, -0.2, 0.45])
    x, y, z, w = (tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z, tf.transform.rotation.w)
    # independent quaternion -> matrix (Hamilton, xyzw)
    Rq = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                   [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                   [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    assert np.allclose(Rq, R.numpy(), atol=1e-12) and math.isclose(x * x + y * y + z * z + w * w, 1.0)
    assert got["/tf"][0][1].transforms == []


def test_bad_input_is_refused(tmp_path):
    with SensorBagWriter(tmp_path / "bag") as bag:
        with pytest.raises(ShapeError, match="/img"):
            bag.image("/img", T0, np.zeros((4, 4, 3), np.float32), "cam")
        with pytest.raises(ShapeError, match="position"):
            bag.joint_state("/js", T0, ["a", "b"], [1.0])
        with pytest.raises(InvalidValueError, match="start with"):
            bag.image("img", T0, np.zeros((4, 4), np.uint8), "cam")
        with pytest.raises(InvalidValueError, match="stamp_ns"):
            bag.joint_state("/js", -1, ["a"], [1.0])
        with pytest.raises(ShapeError, match="4, 4"):
            bag.transforms("/tf", T0, [("a", "b", np.eye(3))])
        bag.image("/img", T0, np.zeros((4, 4), np.uint8), "cam")
        with pytest.raises(InvalidValueError, match="already holds"):
            bag.joint_state("/img", T0, ["a"], [1.0])
    with pytest.raises(InvalidValueError, match="already exists"):
        SensorBagWriter(tmp_path / "bag")
    with pytest.raises(InvalidValueError, match="typestore"):
        SensorBagWriter(tmp_path / "other", typestore="ROS2_NOPE")
    with pytest.raises(InvalidValueError, match="closed"):
        bag.image("/img", T0, np.zeros((4, 4), np.uint8), "cam")
