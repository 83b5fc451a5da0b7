"""mano_tracker node in-process: generated MANO frames in (keypoints, control, object centre), poses out."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
import torch
from geometry_msgs.msg import Point32, PointStamped, PolygonStamped, PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Float64MultiArray

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.estimation.hand_object import FINGERTIP_KEYPOINTS
from handypriors_core.models.mano import ManoHand
from handypriors_core.synthetic.mano_sequences import ManoSequenceSettings, make_mano_sequence
from handypriors_core.synthetic.mano_test_model import build_synthetic_mano
from handypriors_ros.conversions import (
    camera_to_camera_info,
    make_header,
    matrix_to_pose,
    pose_to_matrix,
)
from handypriors_ros.mano_tracker import ManoTracker, control_from_array, keypoints_from_polygon

FRAMES = 5
FRAME_ID = "camera_color_optical_frame"
T0 = 1_700_000_000_000_000_000


def test_message_conversions_validate_their_input():
    hand = ManoHand(build_synthetic_mano("right"))
    tips = [Point32(x=float(i), y=2.0 * i, z=1.0) for i in range(5)]
    uv, conf = keypoints_from_polygon(tips)
    assert conf.sum() == 5 and uv[FINGERTIP_KEYPOINTS[2], 0] == 2.0
    with pytest.raises(ShapeError):
        keypoints_from_polygon(tips[:4])
    with pytest.raises(InvalidValueError):
        keypoints_from_polygon([Point32(x=float("nan"))] * 5)
    params = control_from_array([0.0] * 51, hand, hand.betas)
    assert params.hand_pose.shape == (1, 45)
    with pytest.raises(ShapeError):
        control_from_array([0.0] * 50, hand, hand.betas)


def _spin_until(executor, condition, deadline_s: float = 30.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if condition():
            return True
    return False


def test_tracker_node_filters_a_generated_sequence(tmp_path):
    import trimesh

    hand = ManoHand(build_synthetic_mano("right"))
    seq = make_mano_sequence(hand, settings=ManoSequenceSettings(num_frames=FRAMES, render_masks=False))
    mesh = tmp_path / "box.obj"
    trimesh.Trimesh(seq.obj.verts.numpy(), seq.obj.faces.numpy(), process=False).export(mesh)
    controls = seq.hand_estimates(seed=1)
    rclpy.init()
    try:
        tracker = ManoTracker(parameter_overrides=[Parameter("object_mesh", value=str(mesh)),
                                                   Parameter("observations", value=["fingertips", "centre"])])
        source = rclpy.create_node("mano_tracker_test_source")
        pubs = {
            "camera_info": source.create_publisher(CameraInfo, "camera_info", 10),
            "hand_params": source.create_publisher(Float64MultiArray, "hand_params", 10),
            "object_centre": source.create_publisher(PointStamped, "object_centre", 10),
            "object_pose_init": source.create_publisher(PoseStamped, "object_pose_init", 10),
            "hand_keypoints": source.create_publisher(PolygonStamped, "hand_keypoints", 10),
        }
        received = []
        from geometry_msgs.msg import PoseWithCovarianceStamped

        source.create_subscription(PoseWithCovarianceStamped, "object_pose", received.append, 10)
        executor = SingleThreadedExecutor()
        executor.add_node(tracker)
        executor.add_node(source)
        assert _spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                           and tracker.count_publishers("object_pose") > 0)
        pubs["camera_info"].publish(camera_to_camera_info(seq.camera, 0, FRAME_ID))
        assert _spin_until(executor, lambda: tracker.camera is not None)
        for t in range(FRAMES):
            stamp = T0 + t * 33_333_333
            header = make_header(stamp, FRAME_ID)
            pubs["hand_params"].publish(Float64MultiArray(data=[float(v) for v in controls[t].vector()[0]]))
            c = seq.object_centre_2d[t]
            pubs["object_centre"].publish(PointStamped(header=header, point=_point(c)))
            if t == 0:
                pubs["object_pose_init"].publish(PoseStamped(header=header, pose=matrix_to_pose(seq.object2camera[0])))
            def inputs_arrived(t=t, stamp=stamp) -> bool:
                return (stamp in tracker.centres and tracker.control is not None
                        and torch.equal(tracker.control.hand_pose.float(), controls[t].hand_pose)
                        and (t > 0 or tracker.pending_pose is not None))

            assert _spin_until(executor, inputs_arrived)
            kp = seq.keypoints_2d[t]
            pubs["hand_keypoints"].publish(PolygonStamped(header=header, polygon=_polygon(kp)))
            assert _spin_until(executor, lambda n=t + 1: len(received) == n)
        assert [m.header.frame_id for m in received] == [FRAME_ID] * FRAMES
        assert received[-1].header.stamp.nanosec == (T0 + (FRAMES - 1) * 33_333_333) % 1_000_000_000
        errors = [float((pose_to_matrix(m)[:3, 3] - seq.object2camera[t, :3, 3].double()).norm())
                  for t, m in enumerate(received)]
        assert max(errors) < 0.02  # tracked within 2 cm (started at the true pose)
        cov = np.asarray(received[-1].pose.covariance).reshape(6, 6)
        assert np.allclose(cov, cov.T) and bool((np.diag(cov) > 0).all())
        assert tracker.steps == FRAMES
        executor.shutdown()
        tracker.destroy_node()
        source.destroy_node()
    finally:
        rclpy.shutdown()


def _point(c):
    from geometry_msgs.msg import Point

    return Point(x=float(c[0]), y=float(c[1]), z=0.0)


def _polygon(kp):
    from geometry_msgs.msg import Polygon

    return Polygon(points=[Point32(x=float(u), y=float(v), z=1.0) for u, v in kp])
