"""Sparse depth modality: point-to-plane residuals between model surface points and the aligned depth image.

Per frame (:meth:`SparseDepthModality.begin`): the object's surface samples (sampled once, with normals) are
posed at the predicted pose; those facing the camera and in front in a coarse z-buffer of themselves are the
visible ones; at most ``max_points`` of them are kept (evenly). Per Gauss-Newton iteration
(:meth:`~SparseDepthModality.linearize`): each point is projected into the depth image (projective
association, only those pixels are read), the depth there is back-projected to the target ``q``; points the
known hand covers (:class:`~.hand_occlusion.HandOcclusion`), holes and targets farther than the iteration's
considered distance are dropped. Residual per point (:func:`point_to_plane_residuals`)::

    r = n . (p - q),   p = R p_obj + t,   n = R n_obj           [m]

with the closed-form Jacobian over the pose tangent (:func:`point_to_plane_jacobian`)::

    dr/d rho = n^T,   dr/d phi = (n x (p - q) + (p - t) x n)^T

and robust (IRLS) weights. The refiner's depth term is the robust sum of the same residual function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .hand_occlusion import HandOcclusion
from .observation import Observation
from .residuals import ResidualBlock, robust_weights
from .scene import HandObjectScene
from .settings import SparseDepthSettings

__all__ = ["DepthAssociation", "SparseDepthModality", "point_to_plane_jacobian", "point_to_plane_residuals",
           "visible_points"]

_F64 = torch.float64


def point_to_plane_residuals(object2camera: torch.Tensor, points_obj: torch.Tensor, normals_obj: torch.Tensor,
                             targets_cam: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` signed distance [m] of targets ``(M, 3)`` [camera frame] to the tangent planes of the model
    points ``(M, 3)`` / normals ``(M, 3)`` [object frame] posed by ``object2camera (B, 4, 4)`` (positive: the
    model point lies in front of the target along its normal). Differentiable in torch."""
    R, t = object2camera[:, :3, :3], object2camera[:, None, :3, 3]
    p = points_obj @ R.transpose(-1, -2) + t
    n = normals_obj @ R.transpose(-1, -2)
    return (n * (p - targets_cam)).sum(-1)


def point_to_plane_jacobian(object2camera: torch.Tensor, points_obj: torch.Tensor, normals_obj: torch.Tensor,
                            targets_cam: torch.Tensor) -> torch.Tensor:
    """``(M, 6)`` exact derivative of :func:`point_to_plane_residuals` at ``object2camera (4, 4)`` over the tangent
    ``(rho, phi)``: ``[n^T, (n x (p - q) + (p - t) x n)^T]``."""
    R, t = object2camera[:3, :3], object2camera[:3, 3]
    p = points_obj @ R.transpose(0, 1) + t
    n = normals_obj @ R.transpose(0, 1)
    rot = torch.linalg.cross(n, p - targets_cam, dim=-1) + torch.linalg.cross(p - t, n, dim=-1)
    return torch.cat((n, rot), -1)


def visible_points(points_cam: torch.Tensor, normals_cam: torch.Tensor, camera, cell: float,
                   tolerance: float) -> torch.Tensor:
    """``(S,)`` bool: surface points ``(S, 3)`` [m, camera frame] facing the camera and not behind other points.

    Z-buffer of the points themselves on a grid of ``cell`` px cells of ``camera``'s image: a point is visible
    when it lies within ``tolerance`` [m] of the nearest point in its cell.
    """
    facing = ((normals_cam * points_cam).sum(-1) < 0) & (points_cam[:, 2] > 0)
    uv = camera.project(points_cam[None])[0]
    cols = int(camera.width // cell) + 1
    rows = int(camera.height // cell) + 1
    cx = (uv[:, 0] / cell).floor().long()
    cy = (uv[:, 1] / cell).floor().long()
    inside = facing & (cx >= 0) & (cx < cols) & (cy >= 0) & (cy < rows)
    key = (cy.clamp(0, rows - 1) * cols + cx.clamp(0, cols - 1))
    z = torch.where(inside, points_cam[:, 2], torch.full_like(points_cam[:, 2], float("inf")))
    zmin = torch.full((rows * cols,), float("inf"), dtype=z.dtype, device=z.device)
    zmin = zmin.scatter_reduce(0, key, z, reduce="amin")
    return inside & (z <= zmin[key] + tolerance)


@dataclass(frozen=True)
class DepthAssociation:
    """Model points associated with depth targets (fixed while a pose is optimised, as the refiner does).

    Attributes: modality; indices ``(M,)`` of its model points; targets ``(M, 3)`` [m, camera frame].
    """

    modality: SparseDepthModality
    indices: torch.Tensor
    targets: torch.Tensor

    def residual(self, object2camera: torch.Tensor) -> torch.Tensor:
        """``(B, M)`` point-to-plane residuals [m] at poses ``(B, 4, 4)`` (the modality's residual function)."""
        return self.modality.residual(object2camera, self.indices, self.targets.to(object2camera))


class SparseDepthModality:
    """Point-to-plane depth observation of the object pose (see the module docstring)."""

    name = "sparse_depth"
    relinearize = True

    def __init__(self, scene: HandObjectScene, settings: SparseDepthSettings) -> None:
        self.scene = scene
        self.settings = settings
        self.points_obj = scene.object.samples.to(scene.device, _F64)  # (S, 3)
        self.normals_obj = scene.object.sample_normals.to(scene.device, _F64)
        v, f = scene.object.verts.double(), scene.object.faces
        area = 0.5 * torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1).norm(dim=-1).sum()
        #: mean distance [m] between neighbouring surface samples (sets the z-buffer cell)
        self.sample_spacing = float((area / self.points_obj.shape[0]).sqrt())
        self._frame = None

    def begin(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None) -> bool:
        """Choose this frame's visible model points at ``object2camera (4, 4)``; False without depth."""
        self._frame = None
        if obs.frame.depth is None:
            return False
        s = self.settings
        pose = object2camera.to(self.scene.device, _F64)
        p = self.points_obj @ pose[:3, :3].T + pose[:3, 3]
        n = self.normals_obj @ pose[:3, :3].T
        # a cell must hold a sample of the nearest surface wherever it exists: about 2.5 sample spacings
        depth = float(pose[2, 3].clamp_min(0.05))
        cell = max(s.zbuffer_cell, s.zbuffer_spacings * self.sample_spacing * float(obs.camera.fx) / depth)
        vis = visible_points(p, n, obs.camera, cell, s.self_occlusion)
        if occlusion is not None:
            vis &= ~occlusion.covers(p, s.hand_margin)
        idx = torch.nonzero(vis)[:, 0]
        if idx.numel() < s.min_points:
            return False
        if idx.numel() > s.max_points:
            idx = idx[torch.linspace(0, idx.numel() - 1, s.max_points, device=idx.device).round().long()]
        self._frame = (obs, idx, occlusion)
        return True

    def associate(self, object2camera: torch.Tensor, distance: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Projective association at ``object2camera (4, 4)``: ``(indices (M,), targets (M, 3) [m])`` of the
        frame's points whose depth pixel is valid, not hand, and within ``distance`` [m] of their plane."""
        if self._frame is None:
            return None
        obs, idx, occlusion = self._frame
        pose = object2camera.to(self.scene.device, _F64)
        p = self.points_obj[idx] @ pose[:3, :3].T + pose[:3, 3]
        depth = obs.frame.depth
        H, W = depth.shape
        uv = obs.camera.project(p.float()[None])[0]
        u, v = uv[:, 0].round().long(), uv[:, 1].round().long()
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (p[:, 2] > 0)
        z = depth[v.clamp(0, H - 1).cpu(), u.clamp(0, W - 1).cpu()].to(p)
        ok = inside & torch.isfinite(z) & (z > 0)
        z = torch.where(ok, z, torch.ones_like(z))
        q = obs.camera.unproject(torch.stack((u, v), -1).to(obs.camera.fx.dtype)[None], z.float()[None])[0].to(_F64)
        if occlusion is not None:
            ok &= ~occlusion.covers(q, self.settings.hand_margin)
        n = self.normals_obj[idx] @ pose[:3, :3].T
        ok &= ((n * (p - q)).sum(-1)).abs() < distance
        if int(ok.sum()) < self.settings.min_points:
            return None
        return idx[ok], q[ok]

    def residual(self, object2camera: torch.Tensor, indices: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(B, M)`` point-to-plane residuals [m] of the associated points at poses ``(B, 4, 4)`` (in the poses'
        dtype; differentiable)."""
        return point_to_plane_residuals(object2camera, self.points_obj[indices].to(object2camera),
                                        self.normals_obj[indices].to(object2camera), targets.to(object2camera))

    def association(self, obs: Observation, object2camera: torch.Tensor, distance: float,
                    occlusion: HandOcclusion | None = None) -> DepthAssociation | None:
        """Visible points at ``object2camera (4, 4)`` associated once within ``distance`` [m] (None: too few)."""
        pose = object2camera.detach().to(self.scene.device, _F64)
        if not self.begin(obs, pose, occlusion if occlusion is not None else HandOcclusion(self.scene, obs)):
            return None
        assoc = self.associate(pose, distance)
        return DepthAssociation(self, *assoc) if assoc is not None else None

    def linearize(self, object2camera: torch.Tensor, iteration: int) -> ResidualBlock | None:
        """``(r, J, w)`` at ``object2camera (4, 4)`` with the association range and noise of ``iteration``."""
        s = self.settings
        level = min(iteration, len(s.considered_distances) - 1)
        assoc = self.associate(object2camera, s.considered_distances[level])
        if assoc is None:
            return None
        indices, targets = assoc
        pose = object2camera.to(self.scene.device, _F64)
        r = self.residual(pose[None], indices, targets)[0]
        J = point_to_plane_jacobian(pose, self.points_obj[indices], self.normals_obj[indices], targets)
        w = robust_weights(r, s.robust_scales[level], s.robust)
        return ResidualBlock(self.name, r.cpu(), J.cpu(), w.cpu(), s.standard_deviations[level])
