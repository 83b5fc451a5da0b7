"""handypriors_ros.conversions: images (every encoding, padded rows, big-endian), camera info, poses, time."""

from __future__ import annotations

import array
import math

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform
from handypriors_ros import conversions as cv

PAD = 5  # bytes of padding at the end of every row in the hand-built messages


def _message(encoding: str, rows: list[bytes], width: int, big_endian: bool = False) -> Image:
    """An Image whose rows are the given bytes plus PAD garbage bytes each."""
    msg = Image()
    msg.height, msg.width, msg.encoding = len(rows), width, encoding
    msg.is_bigendian = big_endian
    msg.step = len(rows[0]) + PAD
    msg.data = array.array("B", b"".join(row + b"\xab" * PAD for row in rows))
    return msg


# -- images: decoding of known pixels, one test per encoding ----------------------------------------------
def test_rgb8_known_pixels():
    msg = _message("rgb8", [bytes([1, 2, 3, 4, 5, 6]), bytes([7, 8, 9, 10, 11, 12])], 2)
    rgb = cv.image_to_rgb(msg, backend="numpy")
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 1].tolist() == [4, 5, 6] and rgb[1, 0].tolist() == [7, 8, 9]


def test_bgr8_is_swapped_to_rgb():
    msg = _message("bgr8", [bytes([1, 2, 3, 4, 5, 6])], 2)
    assert cv.image_to_array(msg, backend="numpy")[0, 0].tolist() == [1, 2, 3]  # native order kept
    assert cv.image_to_rgb(msg, backend="numpy")[0].tolist() == [[3, 2, 1], [6, 5, 4]]


def test_rgba8_and_bgra8_drop_alpha():
    rgba = _message("rgba8", [bytes([10, 20, 30, 255, 40, 50, 60, 0])], 2)
    bgra = _message("bgra8", [bytes([10, 20, 30, 255, 40, 50, 60, 0])], 2)
    assert cv.image_to_rgb(rgba, backend="numpy")[0].tolist() == [[10, 20, 30], [40, 50, 60]]
    assert cv.image_to_rgb(bgra, backend="numpy")[0].tolist() == [[30, 20, 10], [60, 50, 40]]


def test_mono8_is_replicated():
    msg = _message("mono8", [bytes([0, 128, 255]), bytes([1, 2, 3])], 3)
    rgb = cv.image_to_rgb(msg, backend="numpy")
    assert rgb.shape == (2, 3, 3)
    assert rgb[0, 1].tolist() == [128, 128, 128] and rgb[1, 2].tolist() == [3, 3, 3]


@pytest.mark.parametrize("big_endian", [False, True])
def test_mono16_little_and_big_endian(big_endian):
    values = [0x0102, 0xFF00, 0x00FF]
    order = "big" if big_endian else "little"
    row = b"".join(v.to_bytes(2, order) for v in values)
    msg = _message("mono16", [row], 3, big_endian=big_endian)
    raw = cv.image_to_array(msg, backend="numpy")
    assert raw.dtype == np.uint16 and raw[0].tolist() == values
    assert cv.image_to_rgb(msg, backend="numpy")[0, :, 0].tolist() == [0x01, 0xFF, 0x00]  # high byte
    assert np.allclose(cv.image_to_depth(msg, invalid_value=-1.0, backend="numpy")[0], [0.258, 65.28, 0.255])


@pytest.mark.parametrize("big_endian", [False, True])
def test_16uc1_millimetres_to_metres(big_endian):
    order = "big" if big_endian else "little"
    rows = [b"".join(v.to_bytes(2, order) for v in (1234, 0)), b"".join(v.to_bytes(2, order) for v in (65535, 1))]
    msg = _message("16UC1", rows, 2, big_endian=big_endian)
    depth = cv.image_to_depth(msg, backend="numpy")
    assert depth.dtype == np.float32 and depth.shape == (2, 2)
    assert depth[0, 0] == pytest.approx(1.234) and depth[1, 0] == pytest.approx(65.535) and depth[1, 1] == 0.001
    assert math.isnan(depth[0, 1])  # 0 = no return -> NaN by default
    assert cv.image_to_depth(msg, invalid_value=0.0, backend="numpy")[0, 1] == 0.0


@pytest.mark.parametrize("big_endian", [False, True])
def test_32fc1_metres_and_invalid_values(big_endian):
    values = np.array([0.5, np.nan, np.inf, -np.inf, -1.0, 2.25], dtype=">f4" if big_endian else "<f4")
    msg = _message("32FC1", [values[:3].tobytes(), values[3:].tobytes()], 3, big_endian=big_endian)
    depth = cv.image_to_depth(msg, invalid_value=0.0, backend="numpy")
    assert depth.tolist() == [[0.5, 0.0, 0.0], [0.0, 0.0, 2.25]]
    assert np.isnan(cv.image_to_depth(msg, backend="numpy")[0, 1:]).all()


@pytest.mark.parametrize("encoding", cv.SUPPORTED_ENCODINGS)
def test_array_image_round_trip_through_cdr(encoding):
    rng = np.random.default_rng(3)
    spec = {"u1": np.uint8, "u2": np.uint16, "f4": np.float32}
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding, 1)
    dtype = spec["f4" if encoding == "32FC1" else "u2" if encoding in ("mono16", "16UC1") else "u1"]
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    if dtype is np.float32:
        values = rng.uniform(0.1, 3.0, shape).astype(np.float32)
    else:
        values = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    msg = cv.array_to_image(values, encoding, stamp=1_700_000_000_123_456_789, frame_id="cam")
    back = deserialize_message(serialize_message(msg), Image)
    assert back.header.frame_id == "cam" and cv.stamp_ns(back) == 1_700_000_000_123_456_789
    assert np.array_equal(cv.image_to_array(back, backend="numpy"), values)


def test_rgb_and_depth_helpers_round_trip():
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    for encoding in ("rgb8", "bgr8"):
        msg = cv.rgb_to_image(rgb, 5, "cam", encoding=encoding)
        assert msg.encoding == encoding and np.array_equal(cv.image_to_rgb(msg, backend="numpy"), rgb)
    depth = np.array([[0.0, 0.4444, np.nan], [70.0, 1.0, -2.0]])
    mm = cv.image_to_array(cv.depth_to_image(depth, encoding="16UC1"), backend="numpy")
    assert mm.tolist() == [[0, 444, 0], [0, 1000, 0]]  # invalid and > 65.535 m -> 0
    metres = cv.image_to_depth(cv.depth_to_image(depth, encoding="32FC1"), invalid_value=-1.0, backend="numpy")
    assert np.allclose(metres, [[-1.0, 0.4444, -1.0], [70.0, 1.0, -1.0]])


def test_auto_backend_matches_numpy():
    msg = cv.rgb_to_image(np.full((3, 4, 3), 7, np.uint8))
    assert np.array_equal(cv.image_to_rgb(msg), cv.image_to_rgb(msg, backend="numpy"))


def test_image_errors_name_the_field():
    msg = _message("rgb8", [bytes(6)], 2)
    msg.encoding = "yuv422"
    with pytest.raises(InvalidValueError, match="yuv422"):
        cv.image_to_rgb(msg)
    short = _message("16UC1", [bytes(4), bytes(4)], 2)
    short.data = short.data[:-1]
    with pytest.raises(InvalidValueError, match="data holds 17 bytes but height \\* step"):
        cv.image_to_depth(short)
    narrow = _message("rgb8", [bytes(6)], 2)
    narrow.step = 5
    narrow.data = array.array("B", bytes(5))
    with pytest.raises(InvalidValueError, match="step 5 is smaller"):
        cv.image_to_rgb(narrow)
    with pytest.raises(InvalidValueError, match="not a depth encoding"):
        cv.image_to_depth(_message("rgb8", [bytes(6)], 2))
    with pytest.raises(InvalidValueError, match="not a colour encoding"):
        cv.image_to_rgb(_message("32FC1", [bytes(4)], 1))
    with pytest.raises(InvalidValueError, match="height and width"):
        cv.decode_image_buffer(b"", 0, 3, 9, "rgb8")
    with pytest.raises(ShapeError):
        cv.array_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(InvalidValueError, match="dtype uint16"):
        cv.array_to_image(np.zeros((2, 2), np.int32), "16UC1")


# -- camera info -------------------------------------------------------------------------------------------
def _camera_info(k, d=(0.0,) * 5, width=640, height=480) -> CameraInfo:
    msg = CameraInfo()
    msg.width, msg.height, msg.distortion_model = width, height, "plumb_bob"
    msg.k, msg.d = list(k), list(d)
    return msg


def test_camera_info_to_camera_and_back():
    k = [615.0, 0.0, 319.5, 0.0, 616.0, 239.5, 0.0, 0.0, 1.0]
    d = [0.1, -0.05, 0.001, 0.002, 0.01]
    camera = cv.camera_info_to_camera(_camera_info(k, d), dtype=torch.float64)
    assert isinstance(camera, PinholeCamera) and (camera.width, camera.height) == (640, 480)
    assert camera.K.reshape(-1).tolist() == k and camera.D.tolist() == d
    msg = cv.camera_to_camera_info(camera, 7, "cam")
    assert list(msg.k) == k and list(msg.d) == d and msg.header.frame_id == "cam"
    assert list(msg.p) == [615.0, 0.0, 319.5, 0.0, 0.0, 616.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert list(msg.r) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    no_distortion = cv.camera_info_to_camera(_camera_info(k, d=()))
    assert no_distortion.D is None
    assert list(cv.camera_to_camera_info(no_distortion).d) == [0.0] * 5


def test_camera_info_rejects_zero_k_and_bad_values():
    with pytest.raises(InvalidValueError, match="all zeros.*uncalibrated"):
        cv.camera_info_to_camera(_camera_info([0.0] * 9))
    with pytest.raises(InvalidValueError, match="CameraInfo.*fx"):
        cv.camera_info_to_camera(_camera_info([-1.0, 0, 1, 0, 1, 1, 0, 0, 1]))
    with pytest.raises(InvalidValueError, match="width and height"):
        cv.camera_info_to_camera(_camera_info([1.0, 0, 1, 0, 1, 1, 0, 0, 1], width=0))


# -- poses ---------------------------------------------------------------------------------------------------
def _random_transform(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    R = axis_angle_to_matrix(torch.randn(3, generator=gen, dtype=torch.float64))
    return make_transform(R, torch.randn(3, generator=gen, dtype=torch.float64))


def test_known_quaternion_layout():
    T = make_transform(axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64)),
                       torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    pose = cv.matrix_to_pose(T)
    assert (pose.position.x, pose.position.y, pose.position.z) == (1.0, 2.0, 3.0)
    q = pose.orientation
    assert [q.x, q.y, q.z, q.w] == pytest.approx([0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pose_and_transform_round_trips(seed):
    T = _random_transform(seed)
    assert torch.allclose(cv.pose_to_matrix(cv.matrix_to_pose(T)), T, atol=1e-12)
    assert torch.allclose(cv.transform_to_matrix(cv.matrix_to_transform(T.numpy())), T, atol=1e-12)
    stamped = cv.matrix_to_transform_stamped(T, "world", "hand", 1_700_000_000_000_000_001)
    stamped = deserialize_message(serialize_message(stamped), TransformStamped)
    assert (stamped.header.frame_id, stamped.child_frame_id) == ("world", "hand")
    assert cv.stamp_ns(stamped) == 1_700_000_000_000_000_001
    assert torch.allclose(cv.transform_to_matrix(stamped), T, atol=1e-12)
    [(parent, child, stamp, matrix)] = cv.transforms_to_matrices([stamped])
    assert (parent, child, stamp) == ("world", "hand", 1_700_000_000_000_000_001)
    assert torch.allclose(matrix, T, atol=1e-12)
    pose_stamped = cv.matrix_to_pose_stamped(T, "camera", 3)
    assert pose_stamped.header.frame_id == "camera" and torch.allclose(cv.pose_to_matrix(pose_stamped), T, atol=1e-12)


def test_pose_with_covariance_is_row_major():
    T = _random_transform(4)
    covariance = np.diag(np.arange(1.0, 7.0))
    covariance[0, 1] = covariance[1, 0] = 0.5
    msg = cv.matrix_to_pose_with_covariance_stamped(T, torch.from_numpy(covariance), "camera", 11)
    msg = deserialize_message(serialize_message(msg), PoseWithCovarianceStamped)
    assert msg.pose.covariance[1] == 0.5 and msg.pose.covariance[7] == 2.0 and msg.pose.covariance[35] == 6.0
    assert np.array_equal(cv.covariance_from_msg(msg), covariance)
    assert torch.allclose(cv.pose_to_matrix(msg), T, atol=1e-12)
    asymmetric = covariance.copy()
    asymmetric[0, 2] = 1.0
    with pytest.raises(InvalidValueError, match="symmetric"):
        cv.matrix_to_pose_with_covariance_stamped(T, asymmetric, "camera")
    with pytest.raises(ShapeError, match="covariance"):
        cv.matrix_to_pose_with_covariance_stamped(T, np.eye(3), "camera")


def test_pose_errors():
    with pytest.raises(ShapeError, match="\\(4, 4\\)"):
        cv.matrix_to_pose(np.eye(3))
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(InvalidValueError):
        cv.matrix_to_transform(bad)
    zero_quaternion = cv.matrix_to_pose(np.eye(4))
    zero_quaternion.orientation.w = 0.0
    with pytest.raises(InvalidValueError, match="quaternion"):
        cv.pose_to_matrix(zero_quaternion)
    with pytest.raises(InvalidValueError, match="non-empty"):
        cv.matrix_to_transform_stamped(np.eye(4), "", "child")


# -- time ------------------------------------------------------------------------------------------------------
def test_time_conversions_are_exact():
    ns = 1_700_000_000_033_333_333
    stamp = cv.time_from_ns(ns)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_000, 33_333_333)
    assert cv.time_to_ns(stamp) == ns
    assert cv.time_to_ns(cv.time_from_ns(-1)) == -1 and cv.time_from_ns(-1).nanosec == 999_999_999
    assert cv.time_to_seconds(Time(sec=2, nanosec=500_000_000)) == 2.5
    assert cv.time_to_ns(cv.time_from_seconds(1.25)) == 1_250_000_000
    with pytest.raises(InvalidValueError):
        cv.time_from_ns(1.5)
    with pytest.raises(InvalidValueError, match="int32"):
        cv.time_from_ns(2**31 * 10**9)
    with pytest.raises(InvalidValueError):
        cv.time_from_seconds(float("nan"))


# -- message builders: markers and diagnostics (pure functions over numpy / torch) ------------------------------
def test_contact_markers_sphere_list_coloured_by_value():
    from visualization_msgs.msg import Marker

    from handypriors_ros.markers import contact_markers

    points = torch.tensor([[0.0, 0.0, 0.5], [0.01, 0.0, 0.5], [0.02, 0.0, 0.5]])
    marker = contact_markers(points, np.array([0.0, 0.5, 2.0]), "cam", 42, value_range=(0.0, 1.0))
    assert marker.type == Marker.SPHERE_LIST and marker.action == Marker.ADD
    assert marker.header.frame_id == "cam" and cv.stamp_ns(marker) == 42
    assert [(p.x, p.y, p.z) for p in marker.points] == [tuple(v) for v in points.double().tolist()]
    colors = [(c.r, c.g, c.b) for c in marker.colors]
    assert colors == [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]  # low blue, middle green, clipped red
    with pytest.raises(ShapeError, match="values"):
        contact_markers(points, np.zeros(2), "cam")


def test_normal_markers_are_arrows_of_the_given_length():
    from visualization_msgs.msg import Marker

    from handypriors_ros.markers import normal_markers

    points = np.array([[0.0, 0.0, 0.5], [0.1, 0.0, 0.5]])
    arrows = normal_markers(points, np.array([[0.0, 0.0, 2.0], [3.0, 4.0, 0.0]]), "cam", 1, length=0.05, first_id=7)
    assert [m.id for m in arrows] == [7, 8] and all(m.type == Marker.ARROW for m in arrows)
    end = arrows[1].points[1]
    assert (end.x, end.y, end.z) == pytest.approx((0.13, 0.04, 0.5))
    with pytest.raises(InvalidValueError, match="non-zero"):
        normal_markers(points, np.zeros((2, 3)), "cam")


def test_mesh_markers_and_marker_array():
    from visualization_msgs.msg import Marker, MarkerArray

    from handypriors_ros.markers import contact_markers, marker_array, mesh_marker, mesh_resource_marker

    verts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 3, 1]])
    pose = make_transform(torch.eye(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 0.4], dtype=torch.float64))
    mesh = mesh_marker(verts, faces, "cam", 5, pose=pose)
    assert mesh.type == Marker.TRIANGLE_LIST and len(mesh.points) == 6
    assert [(p.x, p.y, p.z) for p in mesh.points][3:] == [(0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)]
    assert mesh.pose.position.z == 0.4 and mesh.scale.x == 1.0
    with pytest.raises(InvalidValueError, match="faces index vertices"):
        mesh_marker(verts, torch.tensor([[0, 1, 4]]), "cam")
    resource = mesh_resource_marker("file:///tmp/model.obj", "cam", 5, marker_id=1)
    assert resource.type == Marker.MESH_RESOURCE and resource.mesh_resource == "file:///tmp/model.obj"
    array_msg = marker_array([mesh, resource, contact_markers(np.zeros((1, 3)), [0.0], "cam", 5)])
    assert array_msg.markers[0].action == Marker.DELETEALL and len(array_msg.markers) == 4
    assert deserialize_message(serialize_message(array_msg), MarkerArray).markers[1].type == Marker.TRIANGLE_LIST
    with pytest.raises(InvalidValueError, match="repeat"):
        marker_array([mesh, mesh])


def test_diagnostics_levels_and_key_values():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    from handypriors_ros.diagnostics import TrackerHealth, diagnostic_array, tracker_status

    healthy = tracker_status(TrackerHealth("tracking", rate_hz=30.0, latency_s=0.04, quality=0.9,
                                           frames_processed=100, seconds_since_last_frame=0.03))
    assert healthy.level == DiagnosticStatus.OK and healthy.message == "tracking"
    values = {kv.key: kv.value for kv in healthy.values}
    assert values["state"] == "tracking" and values["rate_hz"] == "30" and values["latency_ms"] == "40"
    assert values["frames_processed"] == "100" and values["last_error"] == ""
    assert tracker_status(TrackerHealth("initialising")).level == DiagnosticStatus.WARN  # NaN metrics never warn
    slow = tracker_status(TrackerHealth("tracking", rate_hz=2.0, quality=0.2, dropped_frames_recent=3))
    assert slow.level == DiagnosticStatus.WARN and "rate 2.0 Hz" in slow.message and "quality 0.20" in slow.message
    lost = tracker_status(TrackerHealth("lost", last_error="joint states too old"))
    assert lost.level == DiagnosticStatus.ERROR and lost.message.startswith("object lost")
    assert "joint states too old" in lost.message
    stale = tracker_status(TrackerHealth("tracking", seconds_since_last_frame=5.0))
    assert stale.level == DiagnosticStatus.ERROR
    with pytest.raises(InvalidValueError, match="state"):
        TrackerHealth("sleeping")
    array_msg = diagnostic_array([healthy, lost], 99)
    assert cv.stamp_ns(array_msg) == 99
    assert len(deserialize_message(serialize_message(array_msg), DiagnosticArray).status) == 2


def test_error_kinds_are_counted():
    from handypriors_ros.diagnostics import ErrorCounter, error_kind

    lines = {"depth image is 32x24 but the colour image is 64x48": "depth",
             "object mask rejected (unsupported encoding 'bogus')": "mask",
             "/tf: transform a <- b would close a loop in the frame tree": "tf",
             "~/initial_pose in frame 'map' ignored: lookup 'map' -> 'camera': unknown frame": "initial_pose",
             "joint_states position is NaN/inf or beyond +-100 for joint(s) joint_3.0": "joint_states",
             "no CameraInfo received on /camera/camera/color/camera_info yet; frame skipped": "camera_info",
             "image is 32x24 but its CameraInfo says 64x48; frame skipped": "camera_info",
             "image stamp went backwards by 0.167 s (looped bag or restarted camera?)": "stamp",
             "image encoding 'yuv422' is not supported": "image",
             "internal error: ValueError('x')": "internal",
             "something else": "other"}
    assert {line: error_kind(line) for line in lines} == lines
    counter = ErrorCounter()
    for line in [*lines, *list(lines)[:2]]:
        counter.count(line)
    values = counter.values()
    assert values["errors_depth"] == 2 and values["errors_mask"] == 2 and values["errors_camera_info"] == 2
    assert values["errors_total"] == len(lines) + 2


# -- images as received (WireImage): checked here, decoded by the tracker process ----------------------------
def _wire_case(encoding: str, padded: bool, big_endian: bool) -> Image:
    rng = np.random.default_rng(3)
    height, width = 5, 4
    if encoding in ("16UC1", "mono16"):
        values = rng.integers(0, 4000, (height, width)).astype(np.uint16)
        values[0, :2] = 0  # no return
    elif encoding == "32FC1":
        values = rng.uniform(0.2, 2.0, (height, width)).astype(np.float32)
        values[0, 0], values[1, 1], values[2, 2] = np.nan, -1.0, np.inf
    else:
        channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}[encoding]
        values = rng.integers(0, 256, (height, width, channels)[: 2 if channels == 1 else 3]).astype(np.uint8)
    wire_dtype = values.dtype.newbyteorder(">" if big_endian else "<")
    rows = [values[r].astype(wire_dtype).tobytes() for r in range(height)]
    msg = _message(encoding, rows, width, big_endian=big_endian)
    if not padded:
        msg.step -= PAD
        msg.data = array.array("B", b"".join(rows))
    return deserialize_message(serialize_message(msg), Image)


@pytest.mark.parametrize("encoding,kind", [("rgb8", "colour"), ("bgr8", "colour"), ("bgra8", "colour"),
                                           ("mono8", "colour"), ("16UC1", "depth"), ("32FC1", "depth")])
@pytest.mark.parametrize("padded,big_endian", [(False, False), (True, False), (False, True)])
def test_wire_image_decodes_like_the_converters_and_is_a_view_of_unpadded_native_bytes(encoding, kind, padded,
                                                                                        big_endian):
    from handypriors_ros import cdr

    msg = cdr.parse_image(serialize_message(_wire_case(encoding, padded, big_endian)))  # (as the node gets it)
    wire = cv.image_to_wire(msg, kind)
    expected = cv.image_to_depth(msg) if kind == "depth" else cv.image_to_rgb(msg)
    decoded = wire.decoded()
    assert wire.shape == (5, 4) and decoded.dtype == expected.dtype
    assert np.array_equal(decoded, expected, equal_nan=True)
    assert np.array_equal(wire.decoded(wire.values.copy()), expected, equal_nan=True)  # (from a copy: the process)
    view = not padded and (not big_endian or encoding in ("rgb8", "bgr8", "bgra8", "mono8"))
    assert np.shares_memory(wire.values, np.frombuffer(msg.data, np.uint8)) == view
    if kind == "depth" and encoding == "16UC1":
        assert wire.values.dtype == np.uint16  # (crosses as millimetres: half the bytes of float32 metres)


def test_wire_image_refuses_the_other_kind_and_bad_sizes():
    depth = _wire_case("16UC1", False, False)
    with pytest.raises(InvalidValueError, match="not a colour encoding"):
        cv.image_to_wire(depth, "colour")
    with pytest.raises(InvalidValueError, match="not a depth encoding"):
        cv.image_to_wire(_wire_case("rgb8", False, False), "depth")
    depth.data = depth.data[:-2]  # a row short
    with pytest.raises(InvalidValueError, match="holds"):
        cv.image_to_wire(depth, "depth")
