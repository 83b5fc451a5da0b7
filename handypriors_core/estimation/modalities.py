"""Modalities: each turns a frame's observation and an object pose into a loss term or residuals.

The refiner sums weighted losses (paper Eq. 6 and L_physics); the filter uses residuals of the same terms
(see :mod:`.filter`). Every function is batched over poses ``object2camera (B, 4, 4)`` so the filter can
evaluate perturbed poses in one call.

Rendering modalities take the :class:`~handypriors_core.render.renderer.RenderOutput` of the joined
hand + object scene at ROI resolution (:func:`render_scene`), where the rendered hand occludes the object:

- ``mask`` (Eq. 2): ``mean_px (S_vis - M_obj)^2`` between the object's *visible* soft silhouette and the
  observed object mask.
- ``img`` (Eq. 1): ``sum_px w |S_vis I_r - M_obj I_in|^2 / sum w`` with ``w`` the observed object mask: the
  rendered object colour where the object is visible (hand pixels excluded by the occlusion) against the
  input image cropped by the mask.
- ``depth``: robust (Geman-McClure, :func:`~.residuals.robust_loss`) disagreement between observed depth and
  the object surface, as two parts: the rendered depth against the aligned depth image over the visible
  object (holes ignored), and the sparse point-to-plane residuals of :mod:`.sparse_depth`, the same residual
  function the filter linearises (associated once per refinement).

Physics modalities (Sec. III-C) use the contact queries: ``penetration`` (Eq. 3, both directions: the
penetration residuals of :mod:`.residuals`, the filter's non-penetration residual), ``sliding`` (object-frame
contact points of t-1 and t), ``con`` (Eq. 4) and ``smo`` (Eq. 5) on object surface samples against the
previous estimates. The point-set forms (:func:`penetration_penalty`, :func:`contact_sliding`,
:func:`silhouette_loss`) take any hand's points, so the MANO optimizer and the contact refiner use the same
terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..geometry.transforms import invert_transform, transform_points
from ..priors.losses import consistency_loss, penetration_loss, sliding_loss, smoothness_loss
from ..render.renderer import RenderOutput
from . import residuals
from .observation import Observation
from .scene import HAND, OBJECT, HandObjectScene
from .settings import DepthSettings
from .sparse_depth import DepthAssociation

__all__ = [
    "TemporalContext",
    "consistency_term",
    "contact_sliding",
    "depth_loss",
    "geman_mcclure",
    "image_loss",
    "mask_loss",
    "penetration_penalty",
    "penetration_term",
    "render_scene",
    "silhouette_loss",
    "sliding_term",
    "smoothness_term",
]


@dataclass
class TemporalContext:
    """What the temporal and contact terms know about earlier frames.

    Attributes:
        previous_poses: object2camera ``(4, 4)`` estimates of earlier frames, oldest first (at most 2 used).
        contact_weights: ``(1, C)`` weights of the hand contact candidates that touched the object at t-1
            (0 = no contact), or None.
        contacts_object_prev: ``(1, C, 3)`` those candidates at t-1 in the object frame [m], or None.
        previous_contact_points: ``(1, C, 3)`` the candidates at t-1 in the camera frame [m], or None.
        previous_contact_distances: ``(1, C)`` their signed distances to the object estimate of t-1 [m] (the filter's
            CPU bookkeeping stores a lower bound for candidates far from the object: see ``filter.contact_context``),
            or None.
        previous_contact_normals: ``(1, C, 3)`` the object's outward normals there (camera frame), or None.
        tips_in_contact: ``(T,)`` bool, fingertips touching the object at t-1, or None.
        previous_joint_angles: ``(J,)`` [rad] at t-1, or None.
    """

    previous_poses: list[torch.Tensor] = field(default_factory=list)
    contact_weights: torch.Tensor | None = None
    contacts_object_prev: torch.Tensor | None = None
    previous_contact_points: torch.Tensor | None = None
    previous_contact_distances: torch.Tensor | None = None
    previous_contact_normals: torch.Tensor | None = None
    tips_in_contact: torch.Tensor | None = None
    previous_joint_angles: torch.Tensor | None = None


def render_scene(scene: HandObjectScene, object2camera: torch.Tensor, obs: Observation, sigma: float,
                 gamma: float, depth: bool, colour: bool) -> RenderOutput:
    """Soft render of hand + object at ROI resolution for poses ``object2camera (B, 4, 4)``."""
    verts, faces, inst = scene.scene_mesh(object2camera, obs.hand)
    colors = None
    if colour:
        hand_col = torch.full((obs.hand.verts.shape[1], 3), 0.25, device=verts.device)
        colors = torch.cat((hand_col, scene.object_vertex_colors), 0)[None]
    return scene.renderer(verts, faces, obs.roi_camera, face_instance=inst, num_instances=2, depth=depth,
                          vertex_colors=colors, sigma=sigma, gamma=gamma)


def geman_mcclure(residual: torch.Tensor, scale: float) -> torch.Tensor:
    """Robust penalty ``r^2 / (r^2 + c^2)`` in [0, 1) (bounded: outliers cost at most 1): twice the shared
    :func:`~.residuals.robust_loss` ``"geman_mcclure"``."""
    return 2.0 * residuals.robust_loss(residual, scale, "geman_mcclure")


def silhouette_loss(visible: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2: ``(B,)`` mean over the pixels of ``weight (S_vis - M)^2`` between a rendered visible soft silhouette
    ``visible (B, H, W)`` and an observed mask ``mask (.., H, W)`` in [0, 1] (``weight`` default 1)."""
    diff2 = (visible - mask) ** 2
    return (diff2 if weight is None else weight * diff2).mean((-1, -2))


def mask_loss(render: RenderOutput, obs: Observation) -> torch.Tensor:
    """Eq. 2 over the ROI: ``(B,)`` mean squared difference of visible object silhouette and observed mask.

    Pixels covered by the rendered hand are down-weighted by its coverage: the hand model's outline is only
    approximately the real hand's (primitive links), and where the two differ the occlusion would otherwise pull
    the object towards or away from the fingers.
    """
    if obs.mask is None:
        return render.visible.new_zeros(render.visible.shape[0])
    return silhouette_loss(render.visible[:, OBJECT], obs.mask, 1.0 - render.full[:, HAND].detach())


def image_loss(render: RenderOutput, obs: Observation) -> torch.Tensor:
    """Eq. 1 over the ROI: ``(B,)`` masked squared colour difference (intensities in [0, 1])."""
    if render.rgb is None or obs.mask is None:
        return render.visible.new_zeros(render.visible.shape[0])
    vis = render.visible[:, OBJECT, ..., None]
    diff = vis * render.rgb - obs.mask[..., None] * obs.rgb
    w = obs.mask[..., None]
    return ((w * diff * diff).sum((1, 2, 3)) / (3 * w.sum((1, 2, 3)).clamp_min(1.0)))


def depth_loss(render: RenderOutput | None, obs: Observation, scene: HandObjectScene, object2camera: torch.Tensor,
               points: DepthAssociation | torch.Tensor | None, settings: DepthSettings) -> torch.Tensor:
    """Robust depth term ``(B,)``: rendered vs observed depth over the visible object, plus the sparse
    point-to-plane residuals of a :class:`~.sparse_depth.DepthAssociation` (the filter's residual function) or,
    given back-projected depth points ``(1, N, 3)``, their signed distance to the posed mesh."""
    B = object2camera.shape[0]
    loss = object2camera.new_zeros(B)
    if render is not None and render.depth is not None and obs.depth is not None:
        w = render.visible[:, OBJECT].detach() * (obs.depth > 0)
        r = torch.where(obs.depth > 0, render.depth - obs.depth, torch.zeros_like(render.depth))
        loss = loss + (w * geman_mcclure(r, settings.robust_scale)).sum((-1, -2)) / w.sum((-1, -2)).clamp_min(1.0)
    if isinstance(points, DepthAssociation):
        loss = loss + geman_mcclure(points.residual(object2camera), settings.robust_scale).mean(-1)
    elif points is not None:
        d = scene.object_sdf.signed_distance(points.expand(B, -1, -1), object2camera).distance
        loss = loss + geman_mcclure(d, settings.robust_scale).mean(-1)
    return loss


def penetration_penalty(scene: HandObjectScene, hand_distances: torch.Tensor, hand_verts: torch.Tensor,
                        object2camera: torch.Tensor, reverse_weight: float) -> torch.Tensor:
    """Eq. 3 in both directions [m], 0-dim: the mean depth of the penetration residuals
    (:func:`~.residuals.penetration_residuals`) of hand points at signed distances ``hand_distances (B, K)`` [m]
    to the object and, with ``reverse_weight > 0``, of the scene's object samples inside the hand mesh
    ``hand_verts (B, V, 3)`` [m] at poses ``object2camera (B, 4, 4)``."""
    r_obj = None
    if reverse_weight > 0:
        samples = scene.object_sample_points(object2camera)
        r_obj = residuals.penetration_residuals(scene.hand_geometry.signed_distance(samples, hand_verts).distance)
    return penetration_loss(residuals.penetration_residuals(hand_distances), r_obj, reverse_weight=reverse_weight,
                            reduction="mean")


def penetration_term(scene: HandObjectScene, obs: Observation, object2camera: torch.Tensor,
                     reverse_weight: float) -> torch.Tensor:
    """Eq. 3 in both directions [m]: hand points inside the object and object samples inside the hand."""
    B = object2camera.shape[0]
    hand_points = torch.cat((obs.hand.surface_points, obs.hand.contact_points), 1).expand(B, -1, -1)
    d_hand = scene.object_sdf.signed_distance(hand_points, object2camera).distance
    return penetration_penalty(scene, d_hand, obs.hand.verts.expand(B, -1, -1), object2camera, reverse_weight)


def contact_sliding(object2camera: torch.Tensor, contact_points: torch.Tensor, contacts_object_prev: torch.Tensor,
                    contact_weights: torch.Tensor) -> torch.Tensor:
    """L_sliding [m], 0-dim: hand contact points ``contact_points (B, C, 3)`` [m, camera frame], seen in the frame of
    the object at ``object2camera (B, 4, 4)``, against where they were at t-1 ``contacts_object_prev (1, C, 3)``
    [m, object frame], weighted by ``contact_weights (1, C)``."""
    B = object2camera.shape[0]
    cur = transform_points(invert_transform(object2camera), contact_points)
    return sliding_loss(contacts_object_prev.expand(B, -1, -1), cur, contact_weights.expand(B, -1))


def sliding_term(obs: Observation, object2camera: torch.Tensor, ctx: TemporalContext) -> torch.Tensor:
    """L_sliding [m]: contact candidates of t-1, seen in the object frame, must not move at t."""
    if ctx.contact_weights is None or ctx.contacts_object_prev is None or not bool((ctx.contact_weights > 0).any()):
        return object2camera.new_zeros(())
    B = object2camera.shape[0]
    return contact_sliding(object2camera, obs.hand.contact_points.expand(B, -1, -1), ctx.contacts_object_prev,
                           ctx.contact_weights)


def consistency_term(scene: HandObjectScene, object2camera: torch.Tensor, ctx: TemporalContext,
                     theta: torch.Tensor | None = None, theta_prev: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 4 [m^2 (+ rad^2)]: the object's surface samples at t against the estimate of t-1 and, given
    ``theta (B, J)`` / ``theta_prev (B, J)`` [rad], the hand articulation at t against t-1."""
    if not ctx.previous_poses:
        return object2camera.new_zeros(())
    cur = scene.object_sample_points(object2camera)
    prev = scene.object_sample_points(ctx.previous_poses[-1][None].to(object2camera)).expand_as(cur)
    return consistency_loss(cur, prev, theta, theta_prev)


def smoothness_term(scene: HandObjectScene, object2camera: torch.Tensor, ctx: TemporalContext) -> torch.Tensor:
    """Eq. 5 [m^2]: acceleration of the object's surface samples over t-2, t-1, t."""
    if len(ctx.previous_poses) < 2:
        return object2camera.new_zeros(())
    cur = scene.object_sample_points(object2camera)
    p1 = scene.object_sample_points(ctx.previous_poses[-1][None].to(object2camera)).expand_as(cur)
    p2 = scene.object_sample_points(ctx.previous_poses[-2][None].to(object2camera)).expand_as(cur)
    return smoothness_loss(cur, p1, p2)
