"""allegro_tracker in-process: outputs, bad inputs, error state, parameters, initial pose, reset, load.

Each test runs the tracker node and a harness node in one executor (``spin_once`` with deadlines) in a context of
its own ROS domain. Images are tiny (64 x 48) and uniform: these tests check the node's plumbing, not tracking
accuracy (``test_ros_tracker_integration.py`` does that).
"""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_ros import conversions as cv
from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 48
K = [60.0, 0.0, 31.5, 0.0, 60.0, 23.5, 0.0, 0.0, 1.0]
CAMERA = "camera_color_optical_frame"
JOINTS = [f"joint_{i}.0" for i in range(16)]
T0 = 1_700_000_000_000_000_000
PERIOD = 33_333_333
DEADLINE = 60.0
INITIAL = [0.0, 0.0, 0.4, 0.0, 0.0, 0.0, 1.0]


def hand2camera() -> np.ndarray:
    """Palm towards the camera, 0.47 m away (fingers up in the image)."""
    T = np.eye(4)
    T[:3, :3] = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    T[:3, 3] = [0.0, 0.03, 0.47]
    return T


@pytest.fixture
def mesh(tmp_path) -> Path:
    import trimesh

    path = tmp_path / "box.obj"
    trimesh.creation.box(extents=[0.04, 0.06, 0.09]).export(path)
    return path


def params(**values):
    from rclpy.parameter import Parameter

    base = {"tracking.mode": "filter", "diagnostics_period": 0.1, "error_hold": 0.5, "warm_up": False,
            "global_search": False, "sync_timeout": 0.3, "tracker_process": False}  # (process: test_ros_replay)
    base.update(values)
    out = []
    for name, value in base.items():
        if isinstance(value, list) and all(isinstance(v, float) for v in value):
            out.append(Parameter(name, Parameter.Type.DOUBLE_ARRAY, value))
        else:
            out.append(Parameter(name, value=value))
    return out


class Harness:
    """The tracker node plus a node that feeds it and records its outputs, spun together."""

    def __init__(self, context, overrides, tracker_node=None):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        from handypriors_ros.allegro_tracker import AllegroTracker
        from handypriors_ros.qos import (
            LATCHED_QOS,
            RELIABLE_SUBSCRIBER_QOS,
            SENSOR_PUBLISHER_QOS,
            TF_QOS,
            TF_STATIC_QOS,
        )

        self.tracker = tracker_node or AllegroTracker(context=context, parameter_overrides=overrides)
        self.node = Node("harness", context=context)
        n = self.node
        self.pub = {
            "image": n.create_publisher(Image, "/camera/camera/color/image_raw", SENSOR_PUBLISHER_QOS),
            "info": n.create_publisher(CameraInfo, "/camera/camera/color/camera_info", SENSOR_PUBLISHER_QOS),
            "depth": n.create_publisher(Image, "/camera/camera/aligned_depth_to_color/image_raw",
                                        SENSOR_PUBLISHER_QOS),
            "joints": n.create_publisher(JointState, "/joint_states", SENSOR_PUBLISHER_QOS),
            "pose": n.create_publisher(PoseStamped, "/allegro_tracker/initial_pose", RELIABLE_SUBSCRIBER_QOS),
            "mask": n.create_publisher(Image, "/allegro_tracker/object_mask", SENSOR_PUBLISHER_QOS),
        }
        self.static = n.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.got = {key: [] for key in ("tf", "pose", "markers", "mesh", "overlay", "diagnostics")}
        deep = type(RELIABLE_SUBSCRIBER_QOS)(depth=100, reliability=RELIABLE_SUBSCRIBER_QOS.reliability)
        n.create_subscription(TFMessage, "/tf", self._on_tf, TF_QOS)
        n.create_subscription(PoseWithCovarianceStamped, "/allegro_tracker/object_pose", self.got["pose"].append, deep)
        n.create_subscription(MarkerArray, "/allegro_tracker/contacts", self.got["markers"].append, deep)
        n.create_subscription(MarkerArray, "/allegro_tracker/object_mesh", self.got["mesh"].append, LATCHED_QOS)
        n.create_subscription(Image, "/allegro_tracker/overlay", self.got["overlay"].append, deep)
        n.create_subscription(DiagnosticArray, "/diagnostics", self.got["diagnostics"].append, deep)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.tracker)
        self.executor.add_node(n)
        assert self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in self.pub.values())
                               and self.tracker.count_publishers("/tf_static") > 0), "discovery"

    def _on_tf(self, msg):
        self.got["tf"].extend(t for t in msg.transforms if t.child_frame_id == "object")

    def spin_until(self, condition, timeout: float = DEADLINE) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def publish_static(self, T: np.ndarray = None):
        from tf2_msgs.msg import TFMessage

        T = hand2camera() if T is None else T
        self.static.publish(TFMessage(transforms=[cv.matrix_to_transform_stamped(T, CAMERA, "hand_root", T0)]))

    def send(self, stamp: int, *, info=True, depth=True, joints=True, image=True, encoding="rgb8",
             size=(W, H), info_size=(W, H), joint_names=JOINTS, joint_value=0.1, depth_encoding="16UC1",
             mask=None):
        """Publish one frame's messages (joint states 10 ms before, at and after ``stamp``)."""
        from sensor_msgs.msg import JointState

        from handypriors_core.geometry.camera import PinholeCamera

        w, h = size
        if joints:
            for offset in (-10_000_000, 0, 10_000_000):
                msg = JointState(header=cv.make_header(stamp + offset), name=list(joint_names),
                                 position=[joint_value] * len(joint_names))
                self.pub["joints"].publish(msg)
        if info:
            camera = PinholeCamera.from_camera_info(K, [], info_size[0], info_size[1])
            self.pub["info"].publish(cv.camera_to_camera_info(camera, stamp, CAMERA))
        if depth:
            if depth_encoding == "16UC1":
                msg = cv.depth_to_image(np.full((h, w), 1.0), stamp, CAMERA)  # a far wall
            else:
                msg = cv.rgb_to_image(np.zeros((h, w, 3), np.uint8), stamp, CAMERA)  # wrong on purpose
            self.pub["depth"].publish(msg)
        if mask is not None:
            values = np.asarray(mask)
            msg = cv.array_to_image(values, "mono8" if values.ndim == 2 else "rgb8", stamp, CAMERA)
            self.pub["mask"].publish(msg)
        if image:
            rgb = np.full((h, w, 3), 90, np.uint8)
            rgb[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = (200, 60, 40)
            if encoding == "rgb8":
                msg = cv.rgb_to_image(rgb, stamp, CAMERA)
            elif encoding == "bgr8":
                msg = cv.rgb_to_image(rgb, stamp, CAMERA, encoding="bgr8")
            else:
                msg = cv.array_to_image(np.zeros((h, w), np.uint16), "16UC1", stamp, CAMERA)
                msg.encoding = encoding
            self.pub["image"].publish(msg)

    def tf_stamps(self) -> list[int]:
        return [cv.stamp_ns(t) for t in self.got["tf"]]

    def status(self):
        """The newest diagnostics status and its values as a dict (or (None, {}))."""
        if not self.got["diagnostics"]:
            return None, {}
        status = self.got["diagnostics"][-1].status[0]
        return status, {kv.key: kv.value for kv in status.values}

    def wait_status(self, predicate, timeout: float = DEADLINE):
        """Spin until a *new* diagnostics message satisfies ``predicate(status, values)``; returns it."""
        start = len(self.got["diagnostics"])
        found = {}

        def check():
            for msg in self.got["diagnostics"][start:]:
                status = msg.status[0]
                values = {kv.key: kv.value for kv in status.values}
                if predicate(status, values):
                    found["hit"] = (status, values)
                    return True
            return False

        ok = self.spin_until(check, timeout)
        return found.get("hit") if ok else (None, self.status()[1])

    def close(self):
        self.executor.shutdown(timeout_sec=0.0)
        self.tracker.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def harness_factory(ros_context):
    made = []

    def make(overrides, **kwargs):
        harness = Harness(ros_context, overrides, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def error_like(pattern):
    return lambda status, values: re.search(pattern, values.get("last_error", "")) is not None


# -- tests --------------------------------------------------------------------------------------------------------
def test_mailbox_keeps_only_the_newest_item():
    from handypriors_ros.allegro_tracker import Mailbox

    box = Mailbox()
    assert box.put("a") is False
    assert box.put("b") is True  # "a" was never taken: a dropped frame
    assert box.take(0.0) == "b"
    t = time.monotonic()
    assert box.take(0.05) is None and time.monotonic() - t >= 0.04
    box.close()
    assert box.take(10.0) is None


def test_tracks_and_publishes_pose_covariance_markers_overlay_diagnostics(harness_factory, mesh):
    from visualization_msgs.msg import Marker

    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL))
    order = []  # the node's publish calls: the object's TF (what latency is measured on) first in every frame
    for name in ("_tf_pub", "_pose_pub", "_marker_pub", "_overlay_pub"):
        publisher = getattr(h.tracker, name)
        publisher.publish = lambda msg, name=name, send=publisher.publish: (order.append(name), send(msg))[1]
    h.publish_static()
    stamps = [T0 + i * PERIOD for i in range(3)]
    for stamp in stamps:  # one frame at a time: each is processed
        h.send(stamp)
        assert h.spin_until(lambda s=stamp: s in h.tf_stamps()), h.status()[1]
    assert h.spin_until(lambda: len(h.got["pose"]) >= 3 and len(h.got["markers"]) >= 3 and len(h.got["overlay"]) >= 3)
    assert order == ["_tf_pub", "_pose_pub", "_marker_pub", "_overlay_pub"] * 3
    [transform] = h.got["tf"][:1]
    assert (transform.header.frame_id, transform.child_frame_id) == (CAMERA, "object")
    assert h.tf_stamps() == stamps
    _, values = h.tracker.health()  # the latency's parts: each image's way in, then its stamp -> its TF published
    assert math.isfinite(values["image_lag_median_ms"])
    assert values["object_tf_out_lag_max_ms"] >= values["object_tf_out_lag_median_ms"] > values["image_lag_median_ms"]
    pose = h.got["pose"][-1]
    assert pose.header.frame_id == CAMERA and cv.stamp_ns(pose) == stamps[-1]
    T_pose, T_tf = cv.pose_to_matrix(pose), cv.transform_to_matrix(h.got["tf"][-1])
    assert torch.allclose(T_pose, T_tf, atol=1e-9)
    # nothing in these uniform images observes the object, and it is far from the hand (no contact motion): the
    # estimate stays the initial pose
    expected = torch.eye(4, dtype=T_pose.dtype)
    expected[:3, 3] = torch.tensor(INITIAL[:3], dtype=T_pose.dtype)  # INITIAL: identity rotation
    assert torch.allclose(T_pose, expected, atol=1e-4), T_pose
    covariance = cv.covariance_from_msg(pose)
    assert np.allclose(covariance, covariance.T) and np.linalg.eigvalsh(covariance).min() > 0
    markers = h.got["markers"][-1].markers
    assert markers[0].action == Marker.DELETEALL
    assert not [m for m in markers if m.ns == "object_mesh"]  # the mesh goes out once, latched, not per frame
    assert len(h.got["mesh"]) == 1, "one latched mesh message"
    [mesh_marker] = h.got["mesh"][0].markers
    assert mesh_marker.type == Marker.TRIANGLE_LIST and len(mesh_marker.points) == 3 * 12  # a box: 12 triangles
    assert mesh_marker.header.frame_id == "object"  # placed by RViz through the object's TF
    assert torch.allclose(cv.pose_to_matrix(mesh_marker.pose), torch.eye(4, dtype=torch.float64))
    image = h.got["overlay"][-1]
    assert (image.width, image.height, image.encoding, cv.stamp_ns(image)) == (W, H, "rgb8", stamps[-1])
    rgb = cv.image_to_rgb(image, backend="numpy")
    green = (rgb[..., 1].astype(int) - rgb[..., 0].astype(int) > 60) & (rgb[..., 1] > 150)
    assert green.sum() > 10, "the object outline (green) is drawn"
    status, values = h.wait_status(lambda s, v: int(v.get("frames_processed", 0)) >= 3)
    assert status is not None, values
    # no object in the images: every frame scores quality 0, so after lost_after (3) frames the track is lost
    assert values["mode"] == "filter" and values["node_state"] == "lost" and float(values["quality"]) == 0.0, values
    assert float(values["tracker_ms"]) > 0 and values["tf_backend"] in ("tf_buffer", "tf2_ros")
    assert float(values["tracker_step_cpu_ms"]) > 0  # the tracker's CPU in its last step, with the stages
    assert values["joint_map"] in ("ros1_allegro", "identity")


def test_bad_inputs_are_reported_and_the_node_recovers(harness_factory, mesh):
    from diagnostic_msgs.msg import DiagnosticStatus

    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL))
    h.publish_static()
    stamp = iter(range(T0, T0 + 1000 * PERIOD, PERIOD))

    def expect(pattern, **send):
        h.send(next(stamp), **send)
        status, values = h.wait_status(error_like(pattern))
        assert status is not None, f"expected an error like {pattern!r}; diagnostics: {values}"
        assert status.level >= DiagnosticStatus.WARN
        return values

    expect("no CameraInfo received", info=False)
    expect("'yuv422' is not supported", encoding="yuv422")
    expect("not a colour encoding", encoding="16UC1")
    expect(r"image is 32x24 but its CameraInfo says 64x48", size=(32, 24))
    # good data returns: the frame is tracked
    good = next(stamp)
    h.send(good)
    assert h.spin_until(lambda: good in h.tf_stamps()), h.status()[1]
    expect(r"joint_states .*NaN", joint_value=float("nan"))
    # a depth image of the wrong encoding is reported, the frame is still tracked without depth
    bad_depth = next(stamp)
    h.send(bad_depth, depth_encoding="rgb8")
    assert h.spin_until(lambda: bad_depth in h.tf_stamps())
    assert h.wait_status(error_like("not a depth encoding"))[0] is not None
    # a broken image with an old stamp is a broken image: it must not restart the track (fuzzing found that)
    seen = len(h.got["diagnostics"])
    h.send(good - 3 * PERIOD, encoding="yuv422")
    status, values = h.wait_status(error_like("'yuv422' is not supported"))
    assert status is not None, values
    errors = [kv.value for d in h.got["diagnostics"][seen:] for kv in d.status[0].values if kv.key == "last_error"]
    assert not any("went backwards" in e for e in errors), errors
    assert int(values["errors_image"]) >= 3 and "errors_stamp" not in values, values  # counted by kind
    # stamps going backwards: reported, track restarted from the initial_pose parameter, frame tracked
    back = good - 5 * PERIOD
    h.send(back)
    assert h.spin_until(lambda: back in h.tf_stamps()), h.status()[1]
    assert h.wait_status(error_like("went backwards"))[0] is not None
    # good data again: the error clears after error_hold
    for _ in range(3):
        s = next(stamp)
        h.send(s)
        assert h.spin_until(lambda s=s: s in h.tf_stamps())
    status, values = h.wait_status(lambda st, v: v.get("last_error") == "" and v.get("node_state") != "error")
    assert status is not None, values  # (the state itself may be "lost": these uniform images match no object)
    assert int(values["dropped_frames"]) >= 5 and int(values.get("dropped_input", 0)) >= 5  # the five bad frames


def test_unknown_joint_names_are_reported_until_a_known_driver_publishes(harness_factory, mesh):
    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL))
    h.publish_static()
    h.send(T0, joint_names=[f"arm_joint_{i}" for i in range(16)])
    status, values = h.wait_status(error_like("no joint map covers the joint names"))
    assert status is not None, values
    wonik = [f"ah_joint{f}{j}" for f in range(4) for j in range(4)]  # the Wonik ROS 2 driver's names
    h.send(T0 + PERIOD, joint_names=wonik)
    assert h.spin_until(lambda: T0 + PERIOD in h.tf_stamps()), h.status()[1]
    status, values = h.wait_status(lambda s, v: v.get("joint_map") == "wonik_ros2")
    assert status is not None, values


def test_missing_mesh_keeps_the_node_up_in_an_error_state_until_a_valid_path_is_set(harness_factory, mesh):
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.parameter import Parameter

    h = harness_factory(params(object_mesh="/no/such/object.obj", initial_pose=INITIAL))
    h.publish_static()
    status, values = h.wait_status(lambda s, v: s.level == DiagnosticStatus.ERROR)
    assert status is not None, values
    assert "/no/such/object.obj" in status.message and values["node_state"] == "error"
    h.send(T0)
    assert not h.spin_until(lambda: bool(h.got["tf"]), timeout=1.0)  # no track without an object
    [result] = h.tracker.set_parameters([Parameter("object_mesh", value="/still/missing.obj")])
    assert not result.successful and "no such file" in result.reason
    [result] = h.tracker.set_parameters([Parameter("object_mesh", value=str(mesh))])
    assert result.successful, result.reason
    status, values = h.wait_status(lambda s, v: v.get("node_state") != "error")
    assert status is not None, values
    assert status.level != DiagnosticStatus.ERROR and values["config_error"] == ""
    h.send(T0 + PERIOD)
    assert h.spin_until(lambda: T0 + PERIOD in h.tf_stamps()), h.status()[1]


def test_empty_mesh_parameter_is_an_error_state(harness_factory):
    from diagnostic_msgs.msg import DiagnosticStatus

    h = harness_factory(params(object_mesh=""))
    status, values = h.wait_status(lambda s, v: s.level == DiagnosticStatus.ERROR)
    assert status is not None and "object_mesh is empty" in status.message, values


def test_parameters_are_validated_live_and_applied(harness_factory, mesh):
    from rclpy.parameter import Parameter

    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL))
    h.publish_static()
    h.send(T0)
    assert h.spin_until(lambda: T0 in h.tf_stamps()), h.status()[1]
    [result] = h.tracker.set_parameters([Parameter("tracking.filter.motion_model", value="teleport")])
    assert not result.successful and "motion_model" in result.reason and "teleport" in result.reason
    [result] = h.tracker.set_parameters([Parameter("tracking.recovery.lost_after", value=0)])
    assert not result.successful  # rclpy's range [1, 10000]
    [result] = h.tracker.set_parameters([Parameter("hand_urdf", value="/x.urdf")])
    assert not result.successful and "read-only" in result.reason
    before = cv.transform_to_matrix(h.got["tf"][-1])
    [result] = h.tracker.set_parameters([Parameter("tracking.filter.observations", value=["centre", "depth"]),
                                         ])
    assert result.successful, result.reason
    [result] = h.tracker.set_parameters([Parameter("object_frame", value="object")])
    assert result.successful
    assert h.tracker.params.tracking.filter.observations == ["centre", "depth"]
    h.send(T0 + PERIOD)
    assert h.spin_until(lambda: T0 + PERIOD in h.tf_stamps()), h.status()[1]
    after = cv.transform_to_matrix(h.got["tf"][-1])
    assert float((after[:3, 3] - before[:3, 3]).norm()) < 0.05  # the rebuilt tracker continued the track


def test_invalid_parameters_stop_the_process_with_a_clear_message(tmp_path):
    with reserve_domain_id() as domain:
        env = ros_environment(domain_id=domain.domain_id, log_dir=tmp_path / "log", interpreter=sys.executable)
        result = subprocess.run(
            [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
             str(REPO / "config" / "allegro_tracking.yaml"), "-p", "tracking.filter.motion_model:=teleport"],
            check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "cannot start" in output and "motion_model" in output and "teleport" in output
    assert "Traceback" not in output


def test_initial_pose_topic_reset_service_and_pose_in_another_frame(harness_factory, mesh):
    from std_srvs.srv import Trigger

    h = harness_factory(params(object_mesh=str(mesh)))
    h.publish_static()
    h.send(T0)
    status, values = h.wait_status(lambda s, v: v.get("node_state") == "waiting for initial pose" and
                                   "initial pose" in v.get("waiting", ""))
    assert status is not None, values
    assert not h.got["tf"]
    # a pose in the hand frame: transformed into the camera frame through TF
    object2hand = np.eye(4)
    object2hand[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.3], dtype=torch.float64)).numpy()
    object2hand[:3, 3] = [0.05, 0.0, 0.04]
    h.pub["pose"].publish(cv.matrix_to_pose_stamped(object2hand, "hand_root", T0))
    assert h.spin_until(lambda: h.tracker._initial_pose.pending is not None)
    h.send(T0 + PERIOD)
    assert h.spin_until(lambda: T0 + PERIOD in h.tf_stamps()), h.status()[1]
    expected = hand2camera() @ object2hand
    got = cv.transform_to_matrix(h.got["tf"][-1]).numpy()
    assert np.linalg.norm(got[:3, 3] - expected[:3, 3]) < 0.03
    # reset without an initial_pose parameter: waits again
    client = h.node.create_client(Trigger, "/allegro_tracker/reset")
    assert h.spin_until(client.service_is_ready)
    future = client.call_async(Trigger.Request())
    assert h.spin_until(future.done)
    assert future.result().success and "waiting for a pose" in future.result().message
    count = len(h.got["tf"])
    h.send(T0 + 2 * PERIOD)
    status, values = h.wait_status(lambda s, v: v.get("node_state") == "waiting for initial pose")
    assert status is not None and len(h.got["tf"]) == count, values
    # with the parameter set, reset re-initialises from it
    from rclpy.parameter import Parameter

    [result] = h.tracker.set_parameters([Parameter("initial_pose", Parameter.Type.DOUBLE_ARRAY, INITIAL)])
    assert result.successful
    future = client.call_async(Trigger.Request())
    assert h.spin_until(future.done)
    assert "the track restarts from the initial_pose parameter" in future.result().message
    h.send(T0 + 3 * PERIOD)
    assert h.spin_until(lambda: T0 + 3 * PERIOD in h.tf_stamps()), h.status()[1]


def test_newest_frame_wins_under_load_and_drops_are_counted(harness_factory, mesh):
    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL))
    h.publish_static()
    stamps = [T0 + i * PERIOD for i in range(12)]
    for i, stamp in enumerate(stamps):  # back to back, far faster than the tracker
        h.send(stamp)
        assert h.spin_until(lambda i=i: h.tracker.activity.images_received == i + 1)  # the node got it (no DDS loss)
    assert h.spin_until(lambda: stamps[-1] in h.tf_stamps()), h.status()[1]  # the newest frame is processed
    processed = h.tf_stamps()
    assert len(processed) < len(stamps) and processed == sorted(processed)
    status, values = h.wait_status(lambda s, v: int(v.get("frames_processed", 0)) == len(processed))
    assert status is not None, values
    assert int(values["dropped_frames"]) + len(processed) == len(stamps), values  # every frame: tracked or counted
    assert int(values["dropped_busy"]) >= len(stamps) - len(processed) - 1, values
    assert int(values["images_received"]) == len(stamps)
    assert math.isfinite(float(values["latency_ms"]))


def test_object_masks_from_a_topic_are_matched_by_stamp_and_checked(harness_factory, mesh):
    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL, mask_source="external"))
    h.publish_static()
    good = np.zeros((H, W), np.uint8)
    good[H // 4: 3 * H // 4, W // 3: 2 * W // 3] = 255
    h.send(T0, mask=good)
    assert h.spin_until(lambda: T0 in h.tf_stamps()), h.status()[1]
    h.send(T0 + PERIOD, mask=np.zeros((H // 2, W // 2), np.uint8))
    status, values = h.wait_status(error_like("object mask is 32x24 but the image is 64x48"))
    assert status is not None, values
    h.send(T0 + 2 * PERIOD, mask=np.zeros((H, W, 3), np.uint8))
    status, values = h.wait_status(error_like("must be 'mono8'"))
    assert status is not None, values
    assert h.spin_until(lambda: T0 + 2 * PERIOD in h.tf_stamps())  # tracked without the rejected mask


def test_colour_model_mask_source_builds_and_tracks(harness_factory, mesh):
    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL, mask_source="colour"))
    h.publish_static()
    h.send(T0)
    assert h.spin_until(lambda: T0 in h.tf_stamps()), h.status()[1]
    status, values = h.wait_status(lambda s, v: v.get("config_error") == "" and int(v["frames_processed"]) >= 1)
    assert status is not None, values
    assert h.tracker.mask_source_type == "ColourModelMask"


def test_detectron2_mask_source_is_selectable_and_says_how_to_install_it(harness_factory, mesh):
    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL, mask_source="detectron2"))
    if importlib.util.find_spec("detectron2") is None:  # the node stays up in an error state that says what to do
        status, values = h.wait_status(lambda s, v: "detectron2" in v.get("config_error", ""))
        assert status is not None, values
        assert "needs the detectron2 package" in values["config_error"] and "install" in values["config_error"]
        assert h.tracker._tracker is None
    else:  # installed: the source is built (its model files come from config/segmentation.yaml)
        status, values = h.wait_status(lambda s, v: "config_error" in v)
        assert status is not None and (values["config_error"] == "" or "detectron2" in values["config_error"])


def test_missing_tf_is_reported_a_fixed_mount_override_works_and_stale_frames_are_skipped(harness_factory, mesh):
    from rclpy.parameter import Parameter

    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL, sync_timeout=0.05))
    h.send(T0)  # no /tf_static: hand_root is unknown
    status, values = h.wait_status(error_like(r"hand2camera: frame .*unknown"))
    assert status is not None, values
    from handypriors_core.geometry.transforms import pose_from_transform

    position, quaternion = pose_from_transform(torch.from_numpy(hand2camera()))
    override = [float(v) for v in position.tolist() + quaternion.tolist()]
    [result] = h.tracker.set_parameters([Parameter("hand2camera_override", Parameter.Type.DOUBLE_ARRAY, override)])
    assert result.successful, result.reason
    h.send(T0 + PERIOD)
    assert h.spin_until(lambda: T0 + PERIOD in h.tf_stamps()), h.status()[1]
    # recorded stamps (2023) are far older than max_image_age on the node clock: skipped and counted
    [result] = h.tracker.set_parameters([Parameter("max_image_age", value=1.0)])
    assert result.successful
    h.send(T0 + 2 * PERIOD)
    status, values = h.wait_status(error_like(r"s old \(max_image_age 1 s\); skipped"))
    assert status is not None and int(values.get("dropped_stale", 0)) == 1, values
    assert T0 + 2 * PERIOD not in h.tf_stamps()


def test_reset_answers_twenty_times_while_images_stream_and_no_frame_waits_for_it(harness_factory, mesh):
    """~/reset is answered from the executor thread without waiting for the worker: frames streaming at 30 Hz keep
    their joint states and TF (a reset that waited inside the executor would starve them: input drops)."""
    from std_srvs.srv import Trigger

    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL, sync_timeout=1.0))
    h.publish_static()
    client = h.node.create_client(Trigger, "/allegro_tracker/reset")
    assert h.spin_until(client.service_is_ready)
    stamp, next_frame, waits = T0, time.monotonic(), []
    for _ in range(20):
        future = client.call_async(Trigger.Request())
        start = time.monotonic()
        while not future.done():
            if time.monotonic() >= next_frame:  # the camera keeps streaming at 30 Hz
                h.send(stamp)
                stamp += PERIOD
                next_frame += 1 / 30
            h.executor.spin_once(timeout_sec=0.005)
            assert time.monotonic() - start < 10.0, "no answer"
        waits.append(time.monotonic() - start)
        assert future.result().success, future.result().message
        assert "restarts from the initial_pose parameter" in future.result().message
    last = stamp - PERIOD
    assert h.spin_until(lambda: last in h.tf_stamps()), h.status()[1]  # tracking goes on after the resets
    status, values = h.wait_status(lambda s, v: int(v.get("frames_processed", 0)) >= 1)
    assert status is not None, values
    assert int(values.get("dropped_input", 0)) == 0, values
    assert sorted(waits)[10] < 1.0, waits
