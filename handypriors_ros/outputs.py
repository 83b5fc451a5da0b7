"""The tracker node's outgoing messages, built from an :class:`~handypriors_core.estimation.tracker.Estimate`.

One function per output; no publishing and no node state here (the node decides what to send and when):

- :func:`object_tf` -> ``tf2_msgs/TFMessage`` (camera optical frame -> object frame) and :func:`object_pose` ->
  ``geometry_msgs/PoseWithCovarianceStamped`` (EKF covariance, symmetrised), both every frame and on the
  latency path: their CDR bytes (:mod:`.cdr`), which a publisher sends as they are, built with numpy (0.05 ms
  instead of 0.7 ms for the message objects and the quaternion's torch ops; docs/node_runtime.md);
- :func:`contact_marker_array` -> ``visualization_msgs/MarkerArray`` (contacts coloured by contact value,
  normals as arrows), sent per frame;
- :func:`object_mesh_marker_array` -> the object mesh as a ``TRIANGLE_LIST`` marker in the object frame (RViz
  places it through TF), sent once on a latched (transient-local) topic instead of with every frame;
- :func:`overlay_image` -> ``sensor_msgs/Image`` (hand and object outlines, contacts, status lines).

Poses are ``(4, 4)`` float64 torch tensors, ``object2camera``; stamps are integer nanoseconds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from handypriors_core.errors import InvalidValueError

from . import cdr, conversions, markers, overlay

__all__ = ["contact_marker_array", "object_mesh_marker_array", "object_pose", "object_tf", "overlay_image",
           "pose_of", "position_quaternion"]

MESH_NAMESPACE = "object_mesh"


def pose_of(estimate: Any) -> torch.Tensor:
    """The estimate's ``object2camera`` as a detached ``(4, 4)`` float64 CPU tensor."""
    return estimate.object2camera.detach().to("cpu", torch.float64)


def position_quaternion(pose: Any) -> tuple[list[float], list[float]]:
    """``(4, 4)`` pose -> position [m] and unit quaternion ``(x, y, z, w)`` with ``w >= 0``: the same formula as
    :func:`handypriors_core.geometry.rotations.matrix_to_quaternion` (the best-conditioned of the four), in numpy
    for one matrix. Raises InvalidValueError for a non-finite pose."""
    m = np.asarray(pose, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InvalidValueError(f"the pose must be a finite (4, 4) matrix; got {m.tolist()}")
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = m[:3, :3].tolist()
    four_sq = (1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22)
    best = max(range(4), key=four_sq.__getitem__)  # 4 q_i^2 >= 1 for the largest component
    rows = ((four_sq[0], m01 + m10, m02 + m20, m21 - m12), (m01 + m10, four_sq[1], m12 + m21, m02 - m20),
            (m02 + m20, m12 + m21, four_sq[2], m10 - m01), (m21 - m12, m02 - m20, m10 - m01, four_sq[3]))
    q = np.asarray(rows[best]) / (2.0 * math.sqrt(four_sq[best]))
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return m[:3, 3].tolist(), q.tolist()


def object_tf(pose: Any, camera_frame: str, object_frame: str, stamp: int) -> bytes:
    """CDR bytes of a ``TFMessage`` with one transform ``camera_frame -> object_frame`` at ``stamp`` [ns]."""
    if not camera_frame or not object_frame:
        raise InvalidValueError(f"camera_frame and object_frame must be non-empty; got {camera_frame!r} and "
                                f"{object_frame!r}")
    return cdr.write_tf_message(stamp, camera_frame, object_frame, *position_quaternion(pose))


def object_pose(pose: Any, covariance: Any, camera_frame: str, stamp: int) -> bytes:
    """CDR bytes of a ``PoseWithCovarianceStamped``; ``covariance (6, 6)`` (translation, rotation) is
    symmetrised and must be finite."""
    cov = np.asarray(covariance.detach().cpu() if isinstance(covariance, torch.Tensor) else covariance,
                     dtype=np.float64)
    if cov.shape != (6, 6) or not np.isfinite(cov).all():
        raise InvalidValueError(f"the pose covariance must be a finite (6, 6) matrix; got shape {cov.shape}")
    cov = 0.5 * (cov + cov.T)
    return cdr.write_pose_with_covariance_stamped(stamp, camera_frame, *position_quaternion(pose),
                                                  cov.reshape(-1).tolist())


def contact_marker_array(estimate: Any, camera_frame: str, stamp: int) -> Any:
    """Contacts (spheres coloured by contact value) and their normals (arrows) in the camera frame; the array
    starts with DELETEALL so that contacts of the previous frame disappear."""
    items = []
    points = estimate.contact_points.detach().cpu()
    if points.shape[0]:
        items.append(markers.contact_markers(points, estimate.contact_values.detach().cpu(), camera_frame, stamp))
        normals = estimate.contact_normals.detach().cpu()
        good = torch.isfinite(normals).all(1) & (normals.norm(dim=1) > 1e-9)
        if bool(good.any()):
            items.extend(markers.normal_markers(points[good], normals[good], camera_frame, stamp))
    return markers.marker_array(items)


def object_mesh_marker_array(verts: torch.Tensor, faces: torch.Tensor, object_frame: str) -> Any:
    """The object mesh ``verts (V, 3)`` [m] object frame, ``faces (F, 3)`` as one marker in ``object_frame``
    (identity pose, stamp 0: RViz draws it at the newest TF of the object)."""
    marker = markers.mesh_marker(verts.detach().cpu(), faces.detach().cpu(), object_frame, 0, ns=MESH_NAMESPACE)
    return markers.marker_array([marker], delete_all_first=False)  # same ns + id: replaces the previous mesh


def overlay_image(estimate: Any, frame: Any, object_mesh: tuple[torch.Tensor, torch.Tensor], hand: Any,
                  pose: torch.Tensor, mode: str, camera_frame: str, stamp: int) -> Any:
    """The input colour image with the object (green) and hand outlines, contacts and status lines.

    ``frame``: the tracked :class:`~handypriors_core.io.frame.Frame`; ``object_mesh``: ``verts (V, 3)`` [m]
    object frame, ``faces (F, 3)``; ``hand``: the hand model (``mesh(q)``); ``pose``: ``object2camera``.
    """
    verts, faces = object_mesh
    with torch.no_grad():
        hand_verts, _, vertex_link = hand.mesh(frame.joint_angles)
        hand2camera = frame.hand2camera.to(hand_verts)
        hand_cam = hand_verts @ hand2camera[:3, :3].T + hand2camera[:3, 3]
        object_cam = verts.double().cpu() @ pose[:3, :3].T + pose[:3, 3]
    camera = frame.camera
    rgb = frame.rgb.decoded() if isinstance(frame.rgb, conversions.WireImage) else frame.rgb.numpy()
    lines = [f"{estimate.status}  quality {estimate.quality:.2f}  {mode}",
             f"{1e3 * estimate.timings.get('total', math.nan):.0f} ms/frame"]
    image = overlay.tracking_overlay(
        rgb, camera.K.double().cpu().numpy(), None if camera.D is None else camera.D.cpu().numpy(),
        object_cam.numpy(), faces.cpu().numpy(), hand_cam.cpu().numpy(), vertex_link.cpu().numpy(),
        contact_points=estimate.contact_points.cpu().numpy(), contact_values=estimate.contact_values.cpu().numpy(),
        lines=lines)
    return conversions.rgb_to_image(image, stamp, camera_frame)
