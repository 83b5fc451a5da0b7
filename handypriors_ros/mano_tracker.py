"""``mano_tracker``: the hand-object EKF (paper Sec. III-E) on 2D keypoints from any detector, as a ROS 2 node.

Subscriptions (all stamped in the camera's optical frame):

- ``camera_info`` (``sensor_msgs/CameraInfo``): intrinsics (the latest is used).
- ``hand_keypoints`` (``geometry_msgs/PolygonStamped``): one frame of 2D keypoints, ``x = u``, ``y = v`` [px],
  ``z`` = confidence (0 = not detected); 21 points in ``MANO_KEYPOINT_NAMES`` order, or 5 fingertips (thumb,
  index, middle, ring, little). Each message is one filter step.
- ``hand_params`` (``std_msgs/Float64MultiArray``): the control, an external hand estimate (e.g. a network's
  output), ``global_orient (3), transl (3), hand_pose (J)`` [, ``betas (S)``] in the camera frame. The latest
  one received is used for the next step.
- ``object_centre`` (``geometry_msgs/PointStamped``): detected object centre, ``x = u``, ``y = v`` [px]; used
  when its stamp equals the keypoints' stamp.
- ``object_pose_init`` (``geometry_msgs/PoseStamped``): (re)initialises the filter's object pose (e.g. from an
  object pose detector); the filter starts at the first one received once a control is known.

Publications: ``object_pose`` (``geometry_msgs/PoseWithCovarianceStamped``, object2camera with the EKF's
6x6 covariance) and ``hand_params_filtered`` (``std_msgs/Float64MultiArray``, the filtered ``global_orient,
transl, hand_pose``), both with the keypoints' stamp.

Parameters: ``mano_model`` (path of ``MANO_RIGHT.pkl``; empty = the synthetic test model of side
``synthetic_side``), ``num_pca_comps`` (0 = 45 axis-angles), ``flat_hand_mean``, ``object_mesh`` (required),
``object_scale``, ``observations`` (e.g. ``["fingertips", "centre"]``: O_hand, O_object, both; ``"contact"``
adds the contact prior), ``keypoint_std`` and ``centre_std`` [px].
"""

from __future__ import annotations

from typing import Any, NoReturn

import torch
from rclpy.node import Node

from handypriors_core.errors import InvalidValueError, ShapeError
from handypriors_core.estimation.hand_object import (
    FINGERTIP_KEYPOINTS,
    HandObjectEKF,
    HandObjectEKFSettings,
    HandObjectObservation,
    ManoParams,
)

__all__ = ["ManoTracker", "control_from_array", "keypoints_from_polygon", "main"]


def keypoints_from_polygon(points: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``PolygonStamped.polygon.points`` (21 keypoints or 5 fingertips; ``z`` = confidence) -> ``(21, 2)``
    pixels and ``(21,)`` confidences (0 where not given)."""
    n = len(points)
    if n not in (21, 5):
        raise ShapeError(f"hand_keypoints must hold 21 keypoints or 5 fingertips; got {n} points")
    xyz = torch.tensor([[float(p.x), float(p.y), float(p.z)] for p in points], dtype=torch.float64)
    if not bool(torch.isfinite(xyz).all()):
        raise InvalidValueError("hand_keypoints holds NaN/inf")
    index = torch.arange(21) if n == 21 else torch.tensor(FINGERTIP_KEYPOINTS)
    uv = torch.zeros(21, 2, dtype=torch.float64)
    conf = torch.zeros(21, dtype=torch.float64)
    uv[index] = xyz[:, :2]
    conf[index] = xyz[:, 2].clamp_min(0.0)
    return uv, conf


def control_from_array(values: list[float], hand, betas: torch.Tensor) -> ManoParams:
    """``Float64MultiArray.data`` = ``global_orient (3), transl (3), hand_pose (J)`` [, ``betas (S)``]."""
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    J, S = hand.num_joints, hand.num_betas
    if v.numel() not in (6 + J, 6 + J + S):
        raise ShapeError(f"hand_params must hold 6 + {J} (or 6 + {J} + {S} with betas) values; got {v.numel()}")
    if not bool(torch.isfinite(v).all()):
        raise InvalidValueError("hand_params holds NaN/inf")
    b = v[6 + J:] if v.numel() == 6 + J + S else betas.double()
    return ManoParams.from_vector(v[None, :6 + J], b[None])


class ManoTracker(Node):
    """The node (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("mano_tracker", **kwargs)
        from geometry_msgs.msg import PointStamped, PolygonStamped, PoseStamped, PoseWithCovarianceStamped
        from sensor_msgs.msg import CameraInfo
        from std_msgs.msg import Float64MultiArray

        from handypriors_core.models.mano import ManoHand
        from handypriors_core.models.rigid_object import RigidObject

        from .node_runtime import declare_parameter

        model = declare_parameter(self, "mano_model", "", "MANO model pickle; empty = synthetic test model")
        side = declare_parameter(self, "synthetic_side", "right", "side of the synthetic model")
        pca = declare_parameter(self, "num_pca_comps", 0, "PCA coefficients of hand_pose (0 = 45 axis-angles)",
                                integer_range=(0, 45))
        flat = declare_parameter(self, "flat_hand_mean", False, "zero hand_pose is the flat hand")
        mesh = declare_parameter(self, "object_mesh", "", "object mesh file (.obj, .ply, .stl)")
        scale = declare_parameter(self, "object_scale", 1.0, "mesh units to metres", floating_range=(1e-6, 1e3))
        observations = declare_parameter(self, "observations", ["fingertips", "centre"],
                                         "EKF updates: fingertips (O_hand), centre (O_object), contact")
        kp_std = declare_parameter(self, "keypoint_std", 2.0, "2D keypoint noise [px]", floating_range=(1e-3, 1e3))
        c_std = declare_parameter(self, "centre_std", 3.0, "object centre noise [px]", floating_range=(1e-3, 1e3))
        if not mesh:
            raise InvalidValueError("parameter object_mesh is required")
        options = {"use_pca": pca > 0, "num_pca_comps": max(pca, 1), "flat_hand_mean": flat}
        if model:
            self.hand = ManoHand.from_file(model, **options)
        else:
            from handypriors_core.synthetic.mano_test_model import build_synthetic_mano

            self.hand = ManoHand(build_synthetic_mano(side), side=side, **options)
        obj = RigidObject.from_mesh(mesh, scale=scale)
        settings = HandObjectEKFSettings(observations=tuple(observations), keypoint_std=kp_std, centre_std=c_std)
        self.filter = HandObjectEKF(self.hand, obj, settings)
        self.camera = None
        self.control: ManoParams | None = None
        self.centres: dict[int, torch.Tensor] = {}
        self.initialised = False
        self.pending_pose: torch.Tensor | None = None
        self.steps = 0
        self.pose_pub = self.create_publisher(PoseWithCovarianceStamped, "object_pose", 10)
        self.hand_pub = self.create_publisher(Float64MultiArray, "hand_params_filtered", 10)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, 10)
        self.create_subscription(Float64MultiArray, "hand_params", self._on_control, 10)
        self.create_subscription(PointStamped, "object_centre", self._on_centre, 10)
        self.create_subscription(PoseStamped, "object_pose_init", self._on_pose_init, 10)
        self.create_subscription(PolygonStamped, "hand_keypoints", self._on_keypoints, 10)

    # ---------------------------------------------------------------------------------------- callbacks
    def _on_camera_info(self, msg) -> None:
        from .conversions import camera_info_to_camera

        self.camera = camera_info_to_camera(msg, dtype=torch.float64)

    def _on_control(self, msg) -> None:
        try:
            self.control = control_from_array(list(msg.data), self.hand, self.hand.betas)
        except (ShapeError, InvalidValueError) as exc:
            self.get_logger().warning(f"hand_params ignored: {exc}")

    def _on_centre(self, msg) -> None:
        from .conversions import stamp_ns

        self.centres[stamp_ns(msg)] = torch.tensor([float(msg.point.x), float(msg.point.y)], dtype=torch.float64)
        while len(self.centres) > 50:
            self.centres.pop(next(iter(self.centres)))

    def _on_pose_init(self, msg) -> None:
        from .conversions import pose_to_matrix

        self.pending_pose = pose_to_matrix(msg)

    def _on_keypoints(self, msg) -> None:
        from std_msgs.msg import Float64MultiArray

        from .conversions import matrix_to_pose_with_covariance_stamped, stamp_ns

        if self.camera is None or self.control is None:
            return
        try:
            uv, conf = keypoints_from_polygon(list(msg.polygon.points))
        except (ShapeError, InvalidValueError) as exc:
            self.get_logger().warning(f"hand_keypoints ignored: {exc}")
            return
        stamp = stamp_ns(msg)
        obs = HandObjectObservation(camera=self.camera, keypoints=uv, keypoint_confidence=conf,
                                    object_centre=self.centres.pop(stamp, None))
        if self.pending_pose is not None:  # (re)initialise at this frame: update only
            self.filter.initialize(self.control, self.pending_pose)
            self.pending_pose = None
            self.initialised = True
            self.filter.update(obs)
        elif not self.initialised:
            return
        else:
            self.filter.step(obs, self.control)
        self.steps += 1
        frame = msg.header.frame_id
        self.pose_pub.publish(matrix_to_pose_with_covariance_stamped(
            self.filter.object2camera, self.filter.covariance[:6, :6], frame, msg.header.stamp))
        out = Float64MultiArray()
        out.data = [float(v) for v in self.filter.params.vector()[0]]
        self.hand_pub.publish(out)


def main(args: list[str] | None = None) -> NoReturn:
    """Entry point (console script ``mano_tracker``; ``python -m handypriors_ros.mano_tracker``): ends the process
    with the exit code (:func:`~.node_runtime.exit_process`)."""
    from .node_runtime import exit_process, run_node

    exit_process(run_node(ManoTracker, args))


if __name__ == "__main__":
    main()
