"""Physics as pseudo-observations of the object pose, in the ``(r, J, w)`` form of :mod:`.residuals`.

Points of the known hand (camera frame, fixed while the object pose varies), with their signed distance
``d(c)`` to the posed object (one query for all of them; negative inside, metres):

- fingertips that touched the object at t-1 stay on its surface: ``r = d(tip centre) - tip radius``; a tip
  that moved more than ``2 contact_distance`` off the predicted surface let go and gets weight 0; their noise may
  be tighter than the others' (the filter's ``carried_fingertip_std`` while the fingers carry the object);
- non-penetration, one-sided: hand surface points near the object, ``r = min(d(c), 0)`` (weight 1 inside,
  0 outside, so only penetrating points pull; 0 deeper than ``2 contact_distance``, where the closest face's
  normal says little about the way out).

Residuals by :func:`~.residuals.hand_point_residuals` (the signed-distance residual every estimator shares);
Jacobian from the signed-distance normal ``n`` (:func:`~.residuals.sdf_point_jacobian`):
``dr/d delta = [-n^T, (n x (c - t))^T]``.
"""

from __future__ import annotations

import torch

from . import residuals
from .modalities import TemporalContext
from .observation import Observation
from .residuals import ResidualBlock, sdf_point_jacobian
from .scene import HandObjectScene
from .settings import FilterSettings

__all__ = ["ContactModality"]

_F64 = torch.float64


class ContactModality:
    """Contact and non-penetration pseudo-observations (see the module docstring)."""

    name = "contacts"
    relinearize = False  # one signed-distance query per frame; later iterates to first order

    def __init__(self, scene: HandObjectScene, settings: FilterSettings) -> None:
        self.scene = scene
        self.settings = settings
        radius = scene.object.verts.norm(dim=-1).max()
        self._object_radius = float(radius)
        self._points = None
        self._tip_std = settings.contact_std

    def begin(self, obs: Observation, ctx: TemporalContext, object2camera: torch.Tensor,
              tip_std: float | None = None) -> bool:
        """Pick this frame's hand points: fingertips in contact at t-1 and surface points near the object;
        ``tip_std`` [m]: this frame's standard deviation of the fingertip residuals (default and at most
        ``contact_std``, the non-penetration residuals')."""
        self._points = None
        self._tip_std = self.settings.contact_std if tip_std is None else tip_std
        parts, offsets, sided = [], [], []
        if ctx.tips_in_contact is not None and bool(ctx.tips_in_contact.any()):
            tips = obs.hand.fingertip_centres[0][ctx.tips_in_contact.to(obs.hand.fingertip_centres.device)]
            parts.append(tips)
            offsets.append(torch.full((tips.shape[0],), self.scene.fingertip_radius))
            sided.append(torch.zeros(tips.shape[0], dtype=torch.bool))
        if self.settings.penetration:
            pts = obs.hand.surface_points[0]
            centre = object2camera[:3, 3].to(pts)
            near = (pts - centre).norm(dim=-1) < self._object_radius + self.settings.contact_distance
            pts = pts[near]
            parts.append(pts)
            offsets.append(torch.zeros(pts.shape[0]))
            sided.append(torch.ones(pts.shape[0], dtype=torch.bool))
        if not parts or sum(p.shape[0] for p in parts) == 0:
            return False
        dev = self.scene.device
        self._points = (torch.cat(parts, 0).to(dev), torch.cat(offsets).to(dev, _F64), torch.cat(sided).to(dev))
        return True

    def residual(self, object2camera: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` residuals [m] at poses ``(B, 4, 4)`` (differentiable through the signed distance)."""
        points, offsets, sided = self._points
        B = object2camera.shape[0]
        pts = points.to(object2camera.dtype)[None].expand(B, -1, -1)
        d = self.scene.object_sdf.signed_distance(pts, object2camera).distance
        return residuals.hand_point_residuals(d, offsets.to(d), sided)

    def linearize(self, object2camera: torch.Tensor, iteration: int) -> ResidualBlock | None:
        """``(r, J, w)`` at ``object2camera (4, 4)`` (one signed-distance query)."""
        if self._points is None:
            return None
        points, offsets, sided = self._points
        pose = object2camera.to(self.scene.device, _F64)
        with torch.no_grad():
            sd = self.scene.object_sdf.signed_distance(points.to(_F64)[None], pose[None])
        d, n = sd.distance[0], sd.normal[0]
        r = residuals.hand_point_residuals(d, offsets, sided)
        J = sdf_point_jacobian(points.to(_F64), n, pose[:3, 3])
        J = torch.where((sided & (d > 0))[:, None], torch.zeros_like(J), J)  # the clamp's flat side
        # tips that let go say nothing; outside points of the one-sided term say nothing; neither do points deeper
        # than 2 contact distances inside (a prediction that far off: the closest face's normal is no guide)
        near = (d - offsets).abs() < 2 * self.settings.contact_distance
        w = (near & (~sided | (d < 0))).to(_F64)
        std = min(self._tip_std, self.settings.contact_std)
        if std < self.settings.contact_std:  # the block weighs with the tips' noise: the others' weights scaled down
            w = torch.where(sided, w * (std / self.settings.contact_std) ** 2, w)
            std = self._tip_std
        return ResidualBlock(self.name, r.cpu(), J.cpu(), w.cpu(), std)
