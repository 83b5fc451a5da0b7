"""The tracker node's outgoing messages, built from an :class:`~handypriors_core.estimation.tracker.Estimate`.

One function per output; no publishing and no node state here (the node decides what to send and when):

- :func:`object_tf` -> ``tf2_msgs/TFMessage`` (camera optical frame -> object frame);
- :func:`object_pose` -> ``geometry_msgs/PoseWithCovarianceStamped`` (EKF covariance, symmetrised);
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

import torch

from . import conversions, markers, overlay

__all__ = ["contact_marker_array", "object_mesh_marker_array", "object_pose", "object_tf", "overlay_image",
           "pose_of"]

MESH_NAMESPACE = "object_mesh"


def pose_of(estimate: Any) -> torch.Tensor:
    """The estimate's ``object2camera`` as a detached ``(4, 4)`` float64 CPU tensor."""
    return estimate.object2camera.detach().to("cpu", torch.float64)


def object_tf(pose: torch.Tensor, camera_frame: str, object_frame: str, stamp: int) -> Any:
    """``TFMessage`` with one transform ``camera_frame -> object_frame`` at ``stamp`` [ns]."""
    from tf2_msgs.msg import TFMessage

    return TFMessage(transforms=[conversions.matrix_to_transform_stamped(pose, camera_frame, object_frame, stamp)])


def object_pose(pose: torch.Tensor, covariance: torch.Tensor, camera_frame: str, stamp: int) -> Any:
    """``PoseWithCovarianceStamped``; ``covariance (6, 6)`` (translation, rotation) is symmetrised."""
    covariance = covariance.detach().to("cpu", torch.float64)
    covariance = 0.5 * (covariance + covariance.T)
    return conversions.matrix_to_pose_with_covariance_stamped(pose, covariance, camera_frame, stamp)


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
    lines = [f"{estimate.status}  quality {estimate.quality:.2f}  {mode}",
             f"{1e3 * estimate.timings.get('total', math.nan):.0f} ms/frame"]
    image = overlay.tracking_overlay(
        frame.rgb.numpy(), camera.K.double().cpu().numpy(), None if camera.D is None else camera.D.cpu().numpy(),
        object_cam.numpy(), faces.cpu().numpy(), hand_cam.cpu().numpy(), vertex_link.cpu().numpy(),
        contact_points=estimate.contact_points.cpu().numpy(), contact_values=estimate.contact_values.cpu().numpy(),
        lines=lines)
    return conversions.rgb_to_image(image, stamp, camera_frame)
