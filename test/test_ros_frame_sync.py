"""Frame assembly without DDS: CDR parsing of the high-rate inputs, stamp matching, bounded waiting, the mailbox.

:mod:`handypriors_ros.frame_sync` and :mod:`handypriors_ros.cdr` must import without rclpy (checked in a child
interpreter where importing rclpy fails); message classes are used as plain data (no node, no DDS).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import torch

from handypriors_core.errors import InvalidValueError
from handypriors_core.io.transform_buffer import TransformBuffer
from handypriors_ros import cdr
from handypriors_ros import conversions as cv
from handypriors_ros.frame_sync import FrameAssembler, ImageItem, LagStats, Mailbox, StampedBuffer
from handypriors_ros.joint_state_buffer import JointStateLookupError

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
JOINTS = [f"joint_{i}.0" for i in range(16)]
CAMERA = "camera_color_optical_frame"


def test_frame_sync_and_cdr_import_without_rclpy():
    code = ("import sys; sys.modules['rclpy'] = None\n"
            "import handypriors_ros.frame_sync, handypriors_ros.cdr, handypriors_ros.tracker_setup\n"
            "assert 'rclpy' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# -- CDR ---------------------------------------------------------------------------------------------------------
def test_joint_state_cdr_matches_rclpy_serialization():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    msg = JointState(header=cv.make_header(T0 + 123, "hand"), name=["a", "joint_12.0", "ab"],
                     position=[0.5, -1.25, 3.0], velocity=[], effort=[7.0])
    parsed = cdr.parse_joint_state(serialize_message(msg))
    assert parsed.stamp_ns == T0 + 123 and parsed.header.frame_id == "hand"
    assert parsed.name == ["a", "joint_12.0", "ab"]
    assert parsed.position.tolist() == [0.5, -1.25, 3.0] and parsed.velocity.size == 0
    assert parsed.effort.tolist() == [7.0]
    assert cv.stamp_ns(parsed) == T0 + 123  # usable wherever a JointState message is


def test_tf_message_cdr_matches_rclpy_serialization_and_feeds_the_transform_buffer():
    from rclpy.serialization import serialize_message
    from tf2_msgs.msg import TFMessage

    T = np.eye(4)
    T[:3, :3] = [[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]
    T[:3, 3] = [0.1, -0.2, 0.45]
    msg = TFMessage(transforms=[cv.matrix_to_transform_stamped(T, CAMERA, "hand_root", T0 + 5),
                                cv.matrix_to_transform_stamped(np.eye(4), "world", "camera_link", T0)])
    parsed = cdr.parse_tf_message(serialize_message(msg))
    assert [(t.header.frame_id, t.child_frame_id) for t in parsed.transforms] == [(CAMERA, "hand_root"),
                                                                                  ("world", "camera_link")]
    buffer = TransformBuffer()
    assert buffer.add_tf_message(parsed) == 2
    assert np.allclose(buffer.lookup(CAMERA, "hand_root", T0 + 5).numpy(), T, atol=1e-12)


def test_malformed_cdr_raises_a_typed_error():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    data = serialize_message(JointState(name=JOINTS, position=[0.0] * 16))
    assert data[12:16] == b"\x01\x00\x00\x00" and data[20:24] == b"\x10\x00\x00\x00"  # frame_id "", 16 names
    for bad in (data[:3], data[:40], b"\x01\x01\x00\x00" + data[4:], data[:20] + b"\xff\xff\xff\x7f" + data[24:]):
        with pytest.raises(cdr.CdrError):
            cdr.parse_joint_state(bad)
    with pytest.raises(cdr.CdrError):
        cdr.parse_tf_message(b"\x00\x01\x00\x00\x05\x00\x00\x00")  # 5 transforms announced, none there


def test_joint_state_names_are_reparsed_when_they_change():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    first = JointState(header=cv.make_header(T0, "a"), name=["x", "y"], position=[1.0, 2.0])
    other = JointState(header=cv.make_header(T0, "frame"), name=["x", "z"], position=[3.0, 4.0])
    for msg in (first, first, other, first, other):  # (the second of a pair reuses the cached name list)
        parsed = cdr.parse_joint_state(serialize_message(msg))
        assert parsed.name == list(msg.name) and parsed.position.tolist() == list(msg.position)
        assert parsed.header.frame_id == msg.header.frame_id


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "16UC1"])
def test_image_cdr_matches_rclpy_serialization_and_decodes_like_the_message(encoding):
    from rclpy.serialization import serialize_message

    rng = np.random.default_rng(3)
    if encoding == "16UC1":
        values = rng.integers(0, 2000, (5, 7), dtype=np.uint16)
        msg = cv.array_to_image(values, encoding, T0 + 9, CAMERA)
    else:
        values = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
        msg = cv.rgb_to_image(values, T0 + 9, CAMERA, encoding=encoding)
    parsed = cdr.parse_image(serialize_message(msg))
    assert (parsed.height, parsed.width, parsed.encoding, parsed.step) == (5, 7, encoding, msg.step)
    assert cv.stamp_ns(parsed) == T0 + 9 and parsed.header.frame_id == CAMERA
    if encoding == "16UC1":
        assert np.array_equal(cv.image_to_depth(parsed), cv.image_to_depth(msg), equal_nan=True)
    else:
        assert np.array_equal(cv.image_to_rgb(parsed), values)
    with pytest.raises(cdr.CdrError):
        cdr.parse_image(serialize_message(msg)[:-1])  # one pixel byte short


def test_camera_info_cdr_matches_rclpy_serialization():
    from rclpy.serialization import serialize_message

    from handypriors_core.geometry.camera import PinholeCamera

    camera = PinholeCamera.from_camera_info([500.0, 0, 320.5, 0, 501.0, 240.25, 0, 0, 1],
                                            [0.1, -0.02, 0.001, 0.002, 0.003], 640, 480, "plumb_bob")
    msg = cv.camera_to_camera_info(camera, T0 + 1, CAMERA)
    parsed = cdr.parse_camera_info(serialize_message(msg))
    assert (parsed.width, parsed.height, parsed.distortion_model) == (640, 480, "plumb_bob")
    assert list(parsed.k) == list(msg.k) and list(parsed.p) == list(msg.p) and parsed.d.tolist() == list(msg.d)
    assert torch.equal(cv.camera_info_to_camera(parsed).K, cv.camera_info_to_camera(msg).K)
    with pytest.raises(cdr.CdrError):
        cdr.parse_camera_info(serialize_message(msg)[:60])


# -- stamp matching ----------------------------------------------------------------------------------------------
def test_approximate_time_match_picks_the_nearest_within_the_slop_and_knows_when_it_is_settled():
    buffer = StampedBuffer(size=5)
    assert buffer.match(T0, 20 * MS) is None and not buffer.settled(T0, 20 * MS)
    buffer.add(T0 - 12 * MS, "early")
    assert buffer.match(T0, 20 * MS) == "early"
    assert not buffer.settled(T0, 20 * MS)  # a nearer one may still come
    buffer.add(T0 + 5 * MS, "late")
    assert buffer.settled(T0, 20 * MS) and buffer.match(T0, 20 * MS) == "late"
    assert buffer.match(T0, 4 * MS) is None  # outside the slop
    for k in range(5):  # only the newest `size` are kept
        buffer.add(T0 + (100 + k) * MS, k)
    assert buffer.match(T0, 20 * MS) is None and buffer.newest_stamp() == T0 + 104 * MS


def test_garbage_future_stamps_neither_match_nor_end_the_wait_once_the_stream_resumes():
    buffer = StampedBuffer(size=5)
    for k in range(5):  # hostile stamps far in the future fill the buffer
        buffer.add(2**31 * 1_000_000_000 + k, "garbage")
    assert buffer.settled(T0, 20 * MS)  # while they are buffered the stream looks past any pivot
    buffer.add(T0 - 30 * MS, "valid")  # the stream resumes with real stamps: the garbage is dropped
    assert len(buffer) == 1 and not buffer.settled(T0, 20 * MS)
    buffer.add(T0 + 1 * MS, "match")
    assert buffer.settled(T0, 20 * MS) and buffer.match(T0, 20 * MS) == "match"
    buffer.add(T0 - 2 * MS, "slightly out of order")  # within the restart margin: kept, history intact
    assert len(buffer) == 3 and buffer.newest_stamp() == T0 + 1 * MS


def test_the_newest_stamp_is_kept_through_out_of_order_messages_evictions_and_clear():
    buffer = StampedBuffer(size=3)
    for stamp, newest in ((10, 10), (30, 30), (20, 30), (25, 30), (26, 26), (24, 26)):
        buffer.add(T0 + stamp * MS, stamp)  # (30 falls out when 26 comes: the newest is 26 then)
        assert buffer.newest_stamp() == T0 + newest * MS, stamp
    buffer.clear()
    assert buffer.newest_stamp() is None and not buffer.settled(T0, MS)


def test_mailbox_newest_wins_and_wake_returns_early():
    box = Mailbox()
    assert box.put(1) is False and box.put(2) is True
    assert box.take(0.0) == 2
    threading.Timer(0.05, box.wake).start()
    t = time.monotonic()
    assert box.take(5.0) is None and time.monotonic() - t < 2.0


def test_lag_stats_percentiles():
    stats = LagStats(size=1000)
    assert np.isnan(stats.summary()["p99_ms"])
    for k in range(100):
        stats.add(T0, now_ns=T0 + (k + 1) * MS)  # 1 .. 100 ms
    summary = stats.summary()
    assert summary["median_ms"] == pytest.approx(50.5) and summary["max_ms"] == pytest.approx(100.0)
    assert 98.0 < summary["p99_ms"] <= 100.0 and stats.count == 100


# -- frame assembly ----------------------------------------------------------------------------------------------
def _settings(**values):
    base = {"camera_frame": "", "use_depth": True, "mask_source": "none", "sync_timeout": 0.5,
            "stamp_tolerance": 0.02, "hand2camera_override": [], "hand_root_frame": "hand_root"}
    base.update(values)
    return types.SimpleNamespace(**base)


def _assembler(settings, tf: TransformBuffer, reports: list):
    from handypriors_core.models import URDFHand, allegro_urdf

    hand = URDFHand.from_urdf(allegro_urdf())
    return FrameAssembler(hand.joint_names, lambda: settings, tf.lookup, lambda text, warn: reports.append(text),
                          tf_newest=lambda frame: (tf.time_range(frame) or (None, None))[1])


def _image_and_info(stamp: int, width: int = 8, height: int = 6):
    from handypriors_core.geometry.camera import PinholeCamera

    camera = PinholeCamera(torch.tensor([[10.0, 0, 3.5], [0, 10.0, 2.5], [0, 0, 1]]), width, height)
    image = cv.rgb_to_image(np.full((height, width, 3), 90, np.uint8), stamp, CAMERA)
    return image, cv.camera_to_camera_info(camera, stamp, CAMERA)


def _joint_state(stamp: int, value: float):
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    return cdr.parse_joint_state(serialize_message(JointState(header=cv.make_header(stamp), name=JOINTS,
                                                              position=[value] * 16)))


def _wrist(tf: TransformBuffer, stamp: int, x: float) -> None:
    T = np.eye(4)
    T[:3, 3] = [x, 0.0, 0.4]
    tf.add_transform(CAMERA, "hand_root", stamp, torch.from_numpy(T))


def test_late_joint_states_and_tf_within_the_bound_are_waited_for_and_interpolated():
    """Inputs that come 60 ms after the image (bound 500 ms) cost nothing: the frame gets the interpolated values."""
    tf, reports = TransformBuffer(), []
    assembler = _assembler(_settings(), tf, reports)
    image, info = _image_and_info(T0)
    assembler.add_camera_info(info)
    assembler.add_joint_state(_joint_state(T0 - 10 * MS, 0.1))
    _wrist(tf, T0 - 10 * MS, 0.0)

    def late_inputs():
        time.sleep(0.06)
        _wrist(tf, T0 + 10 * MS, 0.02)
        assembler.add_joint_state(_joint_state(T0 + 10 * MS, 0.3))

    threading.Thread(target=late_inputs).start()
    start = time.monotonic()
    frame, camera_frame = assembler.assemble(ImageItem(image, T0, start), index=4)
    assert time.monotonic() - start >= 0.05  # it waited for the sample after the stamp
    assert camera_frame == CAMERA and frame.index == 4 and frame.rgb.shape == (6, 8, 3)
    assert torch.allclose(frame.joint_angles, torch.full((16,), 0.2))  # interpolated, not held at 0.1
    assert frame.hand2camera[0, 3].item() == pytest.approx(0.01)  # the wrist half-way
    assert frame.depth is None and reports == []


def test_the_images_are_decoded_while_the_joint_states_and_tf_after_the_stamp_are_awaited(monkeypatch):
    """prepare() decodes once the image-side inputs are there; assemble() then uses what it decoded."""
    from handypriors_ros import frame_sync

    decoded = []
    real_rgb = frame_sync.conversions.image_to_rgb
    monkeypatch.setattr(frame_sync.conversions, "image_to_rgb", lambda msg: decoded.append(1) or real_rgb(msg))
    tf, reports = TransformBuffer(), []
    assembler = _assembler(_settings(), tf, reports)
    image, info = _image_and_info(T0)
    item = ImageItem(image, T0, time.monotonic())
    assembler.prepare(item)
    assert item.prepared is None and decoded == []  # no camera info yet: nothing is decoded, nothing waits
    assembler.add_camera_info(info)
    assembler.add_joint_state(_joint_state(T0 - 10 * MS, 0.1))
    _wrist(tf, T0 - 10 * MS, 0.0)
    assert assembler.images_ready(item) and not assembler.inputs_ready(item)
    assembler.prepare(item)
    assembler.prepare(item)  # (once)
    assert decoded == [1] and tuple(item.prepared["rgb"].shape) == (6, 8, 3)
    _wrist(tf, T0 + 10 * MS, 0.02)
    assembler.add_joint_state(_joint_state(T0 + 10 * MS, 0.3))
    assert assembler.inputs_ready(item)
    frame, camera_frame = assembler.assemble(item, index=2)
    assert decoded == [1] and camera_frame == CAMERA and frame.index == 2
    assert int(frame.rgb[0, 0, 0]) == 90 and torch.allclose(frame.joint_angles, torch.full((16,), 0.2))
    assert reports == []


def test_an_image_that_fails_to_decode_early_fails_its_frame_when_assembled():
    tf, reports = TransformBuffer(), []
    assembler = _assembler(_settings(camera_frame=""), tf, reports)
    image, info = _image_and_info(T0)
    image.header.frame_id = ""
    assembler.add_camera_info(info)
    item = ImageItem(image, T0, time.monotonic())
    assembler.prepare(item)  # never raises: the error is kept
    assert isinstance(item.prepared, InvalidValueError)
    with pytest.raises(InvalidValueError, match="no frame_id"):
        assembler.assemble(item, index=0)


def test_inputs_missing_past_the_bound_fail_the_frame_with_a_clear_error():
    tf, reports = TransformBuffer(), []
    assembler = _assembler(_settings(sync_timeout=0.05), tf, reports)
    image, info = _image_and_info(T0)
    assembler.add_camera_info(info)
    _wrist(tf, T0, 0.0)
    assembler.add_joint_state(_joint_state(T0 - 100 * MS, 0.1))  # newest joint state 100 ms before the image
    start = time.monotonic()
    with pytest.raises(JointStateLookupError, match="after the newest"):
        assembler.assemble(ImageItem(image, T0, start), index=0)
    assert 0.04 <= time.monotonic() - start < 2.0  # waited up to the bound, not longer
    assembler.add_joint_state(_joint_state(T0 - 5 * MS, 0.1))  # within the tolerance: held
    frame, _ = assembler.assemble(ImageItem(image, T0, time.monotonic()), index=1)
    assert torch.allclose(frame.joint_angles, torch.full((16,), 0.1))


def test_depth_is_matched_by_stamp_and_a_missing_match_tracks_without_depth():
    tf, reports = TransformBuffer(), []
    assembler = _assembler(_settings(sync_timeout=0.1), tf, reports)
    image, info = _image_and_info(T0)
    assembler.add_camera_info(info)
    assembler.add_joint_state(_joint_state(T0, 0.1))
    _wrist(tf, T0, 0.0)
    for offset, metres in ((-30, 1.0), (-12, 2.0), (4, 3.0), (40, 4.0)):
        assembler.add_depth(cv.depth_to_image(np.full((6, 8), metres), T0 + offset * MS, CAMERA))
    frame, _ = assembler.assemble(ImageItem(image, T0, time.monotonic()), index=0)
    assert float(frame.depth[0, 0]) == pytest.approx(3.0)  # +4 ms is the nearest
    image2, _ = _image_and_info(T0 + 100 * MS)
    assembler.add_joint_state(_joint_state(T0 + 100 * MS, 0.1))
    _wrist(tf, T0 + 100 * MS, 0.0)
    frame, _ = assembler.assemble(ImageItem(image2, T0 + 100 * MS, time.monotonic()), index=1)
    assert frame.depth is None and any("no depth image within 20 ms" in r for r in reports)


@pytest.mark.parametrize("published", [True, False])
def test_the_first_depth_image_is_waited_for_when_the_depth_topic_has_a_publisher(published):
    from handypriors_core.models import URDFHand, allegro_urdf

    tf, reports = TransformBuffer(), []
    hand = URDFHand.from_urdf(allegro_urdf())
    assembler = FrameAssembler(hand.joint_names, lambda: _settings(sync_timeout=0.5), tf.lookup,
                               lambda text, warn: reports.append(text), publishing=lambda stream: published)
    image, info = _image_and_info(T0)
    assembler.add_camera_info(info)
    assembler.add_joint_state(_joint_state(T0, 0.1))
    _wrist(tf, T0, 0.0)
    later = threading.Timer(0.05, lambda: assembler.add_depth(cv.depth_to_image(np.full((6, 8), 0.7), T0, CAMERA)))
    later.start()  # the first depth image comes 50 ms after its colour image
    try:
        frame, _ = assembler.assemble(ImageItem(image, T0, time.monotonic()), index=0)
    finally:
        later.join()
    if published:  # waited for (within sync_timeout)
        assert frame.depth is not None and float(frame.depth[0, 0]) == pytest.approx(0.7)
    else:  # a stream that never sent anything and has no publisher is not waited for
        assert frame.depth is None


@pytest.mark.parametrize("frames", [("cam", "object"), ("camera_color_optical_frame", "obj"), ("c", "o")])
def test_pose_outputs_written_as_cdr_read_back_as_the_messages_rclpy_builds(frames):
    """The node publishes its object TF and pose as CDR bytes (handypriors_ros.outputs); rclpy must read them back
    as the messages it would have built (every string length: the alignment of what follows changes)."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.serialization import deserialize_message
    from tf2_msgs.msg import TFMessage

    from handypriors_core.geometry.rotations import axis_angle_to_matrix
    from handypriors_ros import outputs

    camera, child = frames
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = axis_angle_to_matrix(torch.tensor([0.3, -1.2, 2.9], dtype=torch.float64))
    pose[:3, 3] = torch.tensor([0.01, -0.2, 0.45], dtype=torch.float64)
    covariance = torch.arange(36, dtype=torch.float64).reshape(6, 6) * 1e-4
    stamp = T0 + 123_456_789
    tf = deserialize_message(outputs.object_tf(pose, camera, child, stamp), TFMessage)
    assert tf.transforms == [cv.matrix_to_transform_stamped(pose, camera, child, stamp)]
    msg = deserialize_message(outputs.object_pose(pose, covariance, camera, stamp), PoseWithCovarianceStamped)
    assert msg == cv.matrix_to_pose_with_covariance_stamped(pose, 0.5 * (covariance + covariance.T), camera, stamp)
    with pytest.raises(Exception, match="finite"):
        outputs.object_tf(torch.full((4, 4), float("nan")), camera, child, stamp)


def test_output_quaternion_matches_the_core_conversion_for_every_rotation_including_near_pi():
    from handypriors_core.geometry.rotations import axis_angle_to_matrix, matrix_to_quaternion
    from handypriors_ros.outputs import position_quaternion

    generator = torch.Generator().manual_seed(1)
    axes = torch.nn.functional.normalize(torch.randn(200, 3, generator=generator, dtype=torch.float64), dim=1)
    angles = torch.cat([torch.rand(150, generator=generator, dtype=torch.float64) * torch.pi,
                        torch.pi - torch.logspace(-9, -1, 50, dtype=torch.float64)])  # near pi: w ~ 0
    rotations = axis_angle_to_matrix(axes * angles[:, None])
    expected = matrix_to_quaternion(rotations)
    for R, q in zip(rotations, expected):
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = R
        _, quaternion = position_quaternion(T)
        # (near pi, w ~ 0: q and -q are the same rotation and either sign may come out)
        assert min(np.abs(np.array(quaternion) - q.numpy()).max(), np.abs(np.array(quaternion) + q.numpy()).max()) \
            < 1e-12
        assert quaternion[3] >= 0


def test_with_wire_images_the_colour_and_matched_depth_stay_as_received_and_bad_sizes_are_refused():
    from rclpy.serialization import serialize_message

    from handypriors_core.models import URDFHand, allegro_urdf

    tf, reports = TransformBuffer(), []
    hand = URDFHand.from_urdf(allegro_urdf())
    assembler = FrameAssembler(hand.joint_names, lambda: _settings(sync_timeout=0.1), tf.lookup,
                               lambda text, warn: reports.append(text), check_frames=False, wire_images=True)
    image, info = _image_and_info(T0)
    image = cdr.parse_image(serialize_message(image))  # (as the intake gets it: a view of the CDR bytes)
    assembler.add_camera_info(info)
    assembler.add_joint_state(_joint_state(T0, 0.1))
    _wrist(tf, T0, 0.0)
    for offset, millimetres in ((-12, 2000), (4, 3000), (40, 4000)):
        depth = cv.array_to_image(np.full((6, 8), millimetres, np.uint16), "16UC1", T0 + offset * MS, CAMERA)
        assembler.add_depth(cdr.parse_image(serialize_message(depth)))
    frame, _ = assembler.assemble(ImageItem(image, T0, time.monotonic()), index=0)
    assert isinstance(frame.rgb, cv.WireImage) and isinstance(frame.depth, cv.WireImage)
    assert frame.depth.values.dtype == np.uint16 and frame.depth.decoded()[0, 0] == pytest.approx(3.0)  # +4 ms
    assert np.array_equal(frame.rgb.decoded(), cv.image_to_rgb(image)) and not reports
    later = T0 + 100 * MS
    image2, _ = _image_and_info(later)
    assembler.add_joint_state(_joint_state(later, 0.1))
    _wrist(tf, later, 0.0)
    assembler.add_depth(cv.array_to_image(np.full((3, 4), 1000, np.uint16), "16UC1", later, CAMERA))  # not aligned
    frame, _ = assembler.assemble(ImageItem(image2, later, time.monotonic()), index=1)
    assert frame.depth is None and any("depth image is 4x3 but the colour image is 8x6" in r for r in reports)


def test_inputs_newest_within_the_extrapolation_horizon_are_extrapolated_at_once_and_beyond_it_waited_for():
    from handypriors_core.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    tf, reports = TransformBuffer(max_extrapolation_s=0.02), []
    assembler = _assembler(_settings(sync_timeout=2.0, input_extrapolation=0.01), tf, reports)
    image, info = _image_and_info(T0)
    assembler.add_camera_info(info)
    assembler.add_depth(cv.depth_to_image(np.full((6, 8), 1.0), T0, CAMERA))
    for k in range(-30, -2, 3):  # joints moving at 2 rad/s, 333 Hz, the newest 3 ms before the image stamp
        assembler.add_joint_state(_joint_state(T0 + k * MS, 0.1 + 2.0 * k * 1e-3))
    for k in (-36, -26, -16, -6):  # the wrist at 0.5 m/s along x, turning at 1 rad/s about z; 100 Hz
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1e-3 * k], dtype=torch.float64))
        T[:3, 3] = torch.tensor([0.5e-3 * k, 0.0, 0.4], dtype=torch.float64)
        tf.add_transform(CAMERA, "hand_root", T0 + k * MS, T)
    item = ImageItem(image, T0, time.monotonic())
    assert assembler.inputs_ready(item)  # the newest samples are within 10 ms of the stamp: nothing to wait for
    start = time.monotonic()
    frame, _ = assembler.assemble(item, index=0)
    assert time.monotonic() - start < 1.0  # (a wait would last sync_timeout: 2 s)
    assert torch.allclose(frame.joint_angles, torch.full((16,), 0.1), atol=1e-6)  # constant velocity: exact
    hand2camera = frame.hand2camera.double()
    assert torch.allclose(hand2camera[:3, 3], torch.tensor([0.0, 0.0, 0.4], dtype=torch.float64), atol=1e-6)
    assert float(matrix_to_axis_angle(hand2camera[:3, :3]).norm()) < 1e-6 and not reports
    later, _ = _image_and_info(T0 + 8 * MS)  # the newest TF sample 14 ms before this stamp: waited for
    assert not assembler.inputs_ready(ImageItem(later, T0 + 8 * MS, time.monotonic()))
    tf.add_transform(CAMERA, "hand_root", T0 + 4 * MS, T)
    assembler.add_depth(cv.depth_to_image(np.full((6, 8), 1.0), T0 + 8 * MS, CAMERA))
    assembler.add_joint_state(_joint_state(T0 + 6 * MS, 0.112))
    assert assembler.inputs_ready(ImageItem(later, T0 + 8 * MS, time.monotonic()))  # (4 ms: within the horizon)
    tighter = _assembler(_settings(sync_timeout=2.0, input_extrapolation=0.01, stamp_tolerance=0.002), tf, reports)
    tighter.add_camera_info(info)
    tighter.add_depth(cv.depth_to_image(np.full((6, 8), 1.0), T0 + 8 * MS, CAMERA))
    tighter.add_joint_state(_joint_state(T0 + 8 * MS, 0.112))
    assert not tighter.inputs_ready(ImageItem(later, T0 + 8 * MS, time.monotonic()))  # (at most stamp_tolerance)


@pytest.mark.parametrize("ratio", [0.0, 0.4, 1.0])
def test_extrapolated_pose_continues_a_constant_velocity_screw_motion(ratio):
    from handypriors_core.geometry.rotations import axis_angle_to_matrix
    from handypriors_ros.frame_sync import extrapolate_pose

    axis = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    axis = axis / axis.norm()

    def pose(t: float) -> torch.Tensor:  # turning at 1.3 rad/s about a fixed axis, moving at a constant velocity
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = axis_angle_to_matrix(axis * (2.9 + 1.3 * t))
        T[:3, 3] = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64) + t * torch.tensor([1.0, -2.0, 0.5])
        return T

    out = extrapolate_pose(pose(0.0), pose(0.01), ratio)
    assert out.dtype == torch.float64 and torch.allclose(out, pose(0.01 + 0.01 * ratio), atol=1e-7)
    assert torch.allclose(out[:3, :3] @ out[:3, :3].T, torch.eye(3, dtype=torch.float64), atol=1e-12)
