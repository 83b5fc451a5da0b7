"""Sparse depth modality: point-to-plane residuals between model surface points and the aligned depth image.

Per frame (:meth:`SparseDepthModality.begin`): the object's surface samples (sampled once, with normals) are
posed at the predicted pose; those facing the camera and in front in a coarse z-buffer of themselves are the
visible ones; at most ``max_points`` of them are kept (evenly). Per Gauss-Newton iteration
(:meth:`~SparseDepthModality.linearize`): each point is projected into the depth image (projective
association, only those pixels are read), the depth there is back-projected to the target ``q``; points the
known hand covers (:class:`~.hand_occlusion.HandOcclusion`), holes and targets farther than the iteration's
considered distance are dropped. Residual per point (:func:`point_to_plane_residuals`, whose plane distance
:func:`plane_distances` every path evaluates)::

    r = n . (p - q),   p = R p_obj + t,   n = R n_obj           [m]

with the closed-form Jacobian over the pose tangent (:func:`point_to_plane_jacobian`)::

    dr/d rho = n^T,   dr/d phi = (n x (p - q) + (p - t) x n)^T

and robust (IRLS) weights. The refiner's depth term is the robust sum of the same residual function.

On the CPU the iterated update reads the modality's :meth:`~SparseDepthModality.normal_equations`: association,
residuals, Jacobian rows, weights and ``J^T W J``, ``J^T W r`` by two kept warp launches around one numpy call of
:func:`plane_distances` (:mod:`.sparse_depth_kernel`; a few hundred points: each numpy call cost more than its
arithmetic, about 55 of them per linearisation before).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.camera import MIN_DEPTH
from .hand_occlusion import HandOcclusion
from .observation import Observation
from .residuals import NormalEquations, ResidualBlock, robust_weights
from .scene import HandObjectScene
from .settings import SparseDepthSettings
from .sparse_depth_kernel import SparseDepthPlan

__all__ = ["DepthAssociation", "SparseDepthModality", "plane_distances", "point_to_plane_jacobian",
           "point_to_plane_residuals", "unseen_motions", "visible_points", "visible_points_array", "without_unseen"]

_F64 = torch.float64
_NEXT, _AFTER = [1, 2, 0], [2, 0, 1]  # cross product rows: (a x b)_i = a_next(i) b_after(i) - a_after(i) b_next(i)


def plane_distances(points_cam, normals_cam, targets_cam, dim: int = -1):
    """Signed distance [m] of targets to the tangent planes of posed model points, ``n . (p - q)`` summed over the
    coordinate axis ``dim`` of camera-frame points, normals and targets (``-1``: ``(..., M, 3)``; ``0``: coordinate
    rows ``(3, M)``, the CPU path's layout). Torch (differentiable) or numpy."""
    return (normals_cam * (points_cam - targets_cam)).sum(dim)


def point_to_plane_residuals(object2camera: torch.Tensor, points_obj: torch.Tensor, normals_obj: torch.Tensor,
                             targets_cam: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` signed distance [m] of targets ``(M, 3)`` [camera frame] to the tangent planes of the model
    points ``(M, 3)`` / normals ``(M, 3)`` [object frame] posed by ``object2camera (B, 4, 4)`` (positive: the
    model point lies in front of the target along its normal). Differentiable in torch; numpy arrays work alike
    (the modality's CPU path)."""
    R, t = object2camera[:, :3, :3], object2camera[:, None, :3, 3]
    return plane_distances(points_obj @ R.mT + t, normals_obj @ R.mT, targets_cam)


def point_to_plane_jacobian(object2camera: torch.Tensor, points_obj: torch.Tensor, normals_obj: torch.Tensor,
                            targets_cam: torch.Tensor) -> torch.Tensor:
    """``(M, 6)`` exact derivative of :func:`point_to_plane_residuals` at ``object2camera (4, 4)`` over the tangent
    ``(rho, phi)``: ``[n^T, (n x (p - q) + (p - t) x n)^T] = [n^T, ((q - t) x n)^T]`` (``points_obj`` drops out of
    the rotation part: it only moves ``p`` within its own tangent plane)."""
    return _plane_jacobian(normals_obj @ object2camera[:3, :3].transpose(0, 1), targets_cam, object2camera[:3, 3])


def _plane_jacobian(normals_cam: torch.Tensor, targets_cam: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """``(M, 6)`` ``[n^T, ((q - t) x n)^T]`` from camera-frame normals ``n (M, 3)`` and targets ``q (M, 3)``."""
    return torch.cat((normals_cam, torch.linalg.cross(targets_cam - translation, normals_cam, dim=-1)), -1)


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


def visible_points_array(points_cam: np.ndarray, normals_cam: np.ndarray, focal: np.ndarray, centre: np.ndarray,
                         width: int, height: int, cell: float, tolerance: float) -> np.ndarray:
    """:func:`visible_points` in float64 numpy (the CPU path) over coordinate rows ``points_cam``, ``normals_cam
    (3, S)`` [m], with the camera's ``focal``, ``centre (2, 1)`` [px] and image size: the same choice, as the
    ascending indices ``(V,)`` of the visible points (only the points facing the camera are projected)."""
    facing = (normals_cam * points_cam).sum(0) < 0
    facing &= points_cam[2] > 0
    index = np.flatnonzero(facing)
    p = points_cam.take(index, 1)
    uv = p[:2] / np.maximum(p[2], MIN_DEPTH)
    uv *= focal
    uv += centre
    cols = int(width // cell) + 1
    rows = int(height // cell) + 1
    cells = np.floor(uv / cell).astype(np.int64)
    inside = cells.view(np.uint64) < np.array([[cols], [rows]], np.uint64)  # negative cells wrap to huge
    inside = inside[0] & inside[1]
    index, z, cells = index.compress(inside), p[2].compress(inside), cells.compress(inside, 1)
    key = cells[1] * cols + cells[0]
    zmin = np.full(rows * cols, np.inf)
    np.minimum.at(zmin, key, z)
    return index[z <= zmin[key] + tolerance]


@functools.lru_cache(maxsize=4096)
def _even_subsample(count: int, size: int) -> np.ndarray:
    """Positions ``(size,)`` of ``size`` of ``count`` items spread evenly: the rounded float32 ``linspace`` of the
    torch path (computed once per count; read-only)."""
    out = torch.linspace(0, count - 1, size).round().long().numpy()
    out.setflags(write=False)
    return out


def unseen_motions(points_obj: torch.Tensor, normals_obj: torch.Tensor, radius: float, ratio: float
                   ) -> torch.Tensor:
    """``(6, k)`` orthonormal object-frame twists ``(v [m], radius * w [m])`` along which the surface
    ``points_obj (S, 3)`` / ``normals_obj (S, 3)`` barely moves in its normals' direction: the eigenvectors of the
    shape's point-to-plane information ``sum j j^T``, ``j = [n, (p x n) / radius]``, whose eigenvalue is below
    ``ratio`` times the largest (a rotation about the axis of a cylinder or any surface of revolution; depth
    cannot see it, only the tessellation does)."""
    j = torch.cat((normals_obj, torch.linalg.cross(points_obj, normals_obj, dim=-1) / radius), -1)
    values, vectors = torch.linalg.eigh(j.transpose(0, 1) @ j)
    return vectors[:, values < ratio * values[-1]]


def without_unseen(jacobian: torch.Tensor, unseen: torch.Tensor, rotation: torch.Tensor, radius: float
                   ) -> torch.Tensor:
    """``jacobian (M, 6)`` over the camera tangent ``(rho, phi)`` with its part along the object's ``unseen (6, k)``
    twists (:func:`unseen_motions`, posed by ``rotation (3, 3)``) removed: those directions get no information."""
    R = rotation.to(jacobian)
    Y = unseen.to(jacobian)
    Y = torch.cat((R @ Y[:3], R @ Y[3:]), 0)  # camera frame, still orthonormal
    scale = torch.tensor([1.0, 1.0, 1.0, radius, radius, radius], dtype=jacobian.dtype, device=jacobian.device)
    Js = jacobian / scale  # over (rho, radius * phi)
    return (Js - (Js @ Y) @ Y.transpose(0, 1)) * scale


@dataclass(frozen=True)
class _FrameSample:
    """One frame's visible model points (chosen by :meth:`SparseDepthModality.begin`) and what associating them
    reads: the points ``(M, 3)`` and normals ``(M, 3)`` [object frame, float64], the flat depth image ``(H * W,)``
    [m], the full camera's focal lengths and principal point ``(2,)`` float64 and its size."""

    obs: Observation
    indices: torch.Tensor
    occlusion: HandOcclusion | None
    points: torch.Tensor
    normals: torch.Tensor
    depth: torch.Tensor
    focal: torch.Tensor
    centre: torch.Tensor
    width: int
    height: int
    arrays: SparseDepthPlan | None = None  # the CPU path's compiled passes, bound to this frame


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
    #: linearise on the CPU with numpy (same values as the torch path, which other devices take)
    use_arrays = True

    def __init__(self, scene: HandObjectScene, settings: SparseDepthSettings) -> None:
        self.scene = scene
        self.settings = settings
        self.points_obj = scene.object.samples.to(scene.device, _F64)  # (S, 3)
        self.normals_obj = scene.object.sample_normals.to(scene.device, _F64)
        v, f = scene.object.verts.double(), scene.object.faces
        area = 0.5 * torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1).norm(dim=-1).sum()
        #: mean distance [m] between neighbouring surface samples (sets the z-buffer cell)
        self.sample_spacing = float((area / self.points_obj.shape[0]).sqrt())
        self.radius = float(self.points_obj.norm(dim=-1).max().clamp_min(1e-6))
        #: ``(6, k)`` object-frame twists the shape does not see (:func:`unseen_motions`)
        self.unseen = unseen_motions(self.points_obj, self.normals_obj, self.radius, settings.symmetry_ratio)
        self._unseen_array = self.unseen.detach().to("cpu", _F64).numpy()
        self._points_array = self.points_obj.detach().to("cpu", _F64).numpy()
        self._normals_array = self.normals_obj.detach().to("cpu", _F64).numpy()
        self._frame: _FrameSample | None = None
        self._plan: SparseDepthPlan | None = None  # the CPU path's buffers and launches (made once)

    def begin(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None) -> bool:
        """Choose this frame's visible model points at ``object2camera (4, 4)``; False without depth."""
        self._frame = None
        if obs.frame.depth is None:
            return False
        s = self.settings
        cam = obs.camera
        if self.use_arrays and object2camera.device.type == "cpu" and obs.frame.depth.device.type == "cpu":
            return self._begin_arrays(obs, object2camera.detach().to(_F64).numpy(), occlusion)
        pose = object2camera.to(self.scene.device, _F64)
        # a cell must hold a sample of the nearest surface wherever it exists: about 2.5 sample spacings
        depth = float(pose[2, 3].clamp_min(0.05))
        cell = max(s.zbuffer_cell, s.zbuffer_spacings * self.sample_spacing * float(cam.fx) / depth)
        p = self.points_obj @ pose[:3, :3].T + pose[:3, 3]
        n = self.normals_obj @ pose[:3, :3].T
        vis = visible_points(p, n, cam, cell, s.self_occlusion)
        if occlusion is not None:
            vis &= ~occlusion.covers(p, s.hand_margin)
        idx = torch.nonzero(vis)[:, 0]
        if idx.numel() < s.min_points:
            return False
        if idx.numel() > s.max_points:
            idx = idx[torch.linspace(0, idx.numel() - 1, s.max_points, device=idx.device).round().long()]
        focal = torch.stack((cam.fx, cam.fy)).to(self.scene.device, _F64)
        centre = torch.stack((cam.cx, cam.cy)).to(self.scene.device, _F64)
        depth = obs.frame.depth.to(self.scene.device).reshape(-1)  # (H * W,) read at the projected pixels only
        self._frame = _FrameSample(obs, idx, occlusion, self.points_obj[idx], self.normals_obj[idx], depth, focal,
                                   centre, int(cam.width), int(cam.height))
        return True

    def _begin_arrays(self, obs: Observation, pose: np.ndarray, occlusion: HandOcclusion | None) -> bool:
        """:meth:`begin` on the CPU at ``pose (4, 4)`` float64 by the compiled passes (:class:`~.sparse_depth_kernel.
        SparseDepthPlan`): the torch path's choice of points (``test_sparse_depth_numpy_path``)."""
        s, cam = self.settings, obs.camera
        (fx, _, cx), (_, fy, cy), _ = cam.K.tolist()
        width, height = int(cam.width), int(cam.height)
        cell = max(s.zbuffer_cell, s.zbuffer_spacings * self.sample_spacing * fx / max(float(pose[2, 3]), 0.05))
        if self._plan is None:
            self._plan = SparseDepthPlan(self._points_array, self._normals_array, s.max_points,
                                         self._unseen_array.shape[1] > 0)
        plan = self._plan
        depth = obs.frame.depth.reshape(-1)  # (H * W,) read at the projected pixels only
        plan.bind_frame(depth.numpy(), width, height, (fx, fy, cx, cy),
                        occlusion.lookup() if occlusion is not None else None)
        idx = plan.choose(pose, cell, s.self_occlusion, s.hand_margin)
        if idx.size < s.min_points:
            return False
        idx = idx[_even_subsample(idx.size, s.max_points)] if idx.size > s.max_points else idx.copy()
        plan.select(idx)
        m = idx.size  # (the torch path's points: views of the plan's, replaced with the frame)
        self._frame = _FrameSample(obs, torch.from_numpy(idx.astype(np.int64)), occlusion,
                                   torch.from_numpy(plan.points[:m]), torch.from_numpy(plan.normals[:m]), depth,
                                   torch.from_numpy(np.array((fx, fy))), torch.from_numpy(np.array((cx, cy))), width,
                                   height, plan)
        return True

    def associate(self, object2camera: torch.Tensor, distance: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Projective association at ``object2camera (4, 4)``: ``(indices (M,), targets (M, 3) [m])`` of the
        frame's points whose depth pixel is valid, not hand, and within ``distance`` [m] of their plane."""
        found = self._associate(object2camera, distance)
        return None if found is None else (self._frame.indices[found[0]], found[1])

    def _associate(self, object2camera: torch.Tensor, distance: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """:meth:`associate` as ``(keep (M,) positions among the frame's points, targets (M, 3) [m] float64,
        pixels (M,) flat index of each target's depth pixel)``.

        Each point is projected (float64) to its nearest pixel ``(u, v)``; the target is that pixel's depth
        back-projected, so it lies on the same pixel and the hand test reads the hand z-buffer there directly.
        """
        fs = self._frame
        if fs is None:
            return None
        pose = object2camera.to(self.scene.device, _F64)
        R, t = pose[:3, :3], pose[:3, 3]
        p = fs.points @ R.T + t
        uv = (p[:, :2] / p[:, 2:].clamp_min(MIN_DEPTH) * fs.focal + fs.centre).round()
        uv = uv.clamp(-1.0, float(max(fs.width, fs.height)))  # finite and small: exact in int64
        u, v = uv[:, 0].long(), uv[:, 1].long()
        W, H = fs.width, fs.height
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (p[:, 2] > 0)
        z = fs.depth[v.clamp(0, H - 1) * W + u.clamp(0, W - 1)].to(_F64)
        ok = inside & torch.isfinite(z) & (z > 0)
        z = torch.where(ok, z, torch.ones_like(z))
        q = torch.cat(((uv - fs.centre) / fs.focal * z[:, None], z[:, None]), -1)
        if fs.occlusion is not None:
            ok &= fs.occlusion.depth_at_pixels(uv) >= (z + self.settings.hand_margin).to(fs.occlusion.depth)
        ok &= plane_distances(p, fs.normals @ R.T, q).abs() < distance
        keep = torch.nonzero(ok)[:, 0]
        if keep.numel() < self.settings.min_points:
            return None
        return keep, q[keep], (v * W + u)[keep]

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
        if self._frame is not None and self._frame.arrays is not None:
            found = self._linearize_arrays(object2camera.detach().to("cpu", _F64).numpy(), level)
            if found is None:
                return None
            kept, correlation = found
            plan = self._frame.arrays
            return ResidualBlock(self.name, torch.from_numpy(plan.residuals[:kept].copy()),
                                 torch.from_numpy(plan.rows[:, :kept].T.copy()),
                                 torch.from_numpy(plan.weights[:kept].copy()), s.standard_deviations[level],
                                 s.noise_floor, correlation)
        found = self._associate(object2camera, s.considered_distances[level])
        if found is None:
            return None
        keep, targets, target_pixels = found
        pose = object2camera.to(self.scene.device, _F64)
        points, normals = self._frame.points[keep], self._frame.normals[keep]
        r = point_to_plane_residuals(pose[None], points, normals, targets)[0]
        J = _plane_jacobian(normals @ pose[:3, :3].T, targets, pose[:3, 3])
        if self.unseen.shape[1] > 0:
            J = without_unseen(J, self.unseen, pose[:3, :3], self.radius)
        w = robust_weights(r, s.robust_scales[level], s.robust)
        # points that read the same depth pixel share its noise: residuals per independent pixel
        pixels = int(torch.unique(target_pixels).shape[0])  # a target is its pixel's depth back-projected
        correlation = s.correlation * targets.shape[0] / max(pixels, 1)
        return ResidualBlock(self.name, r.cpu(), J.cpu(), w.cpu(), s.standard_deviations[level], s.noise_floor,
                             correlation)

    def normal_equations(self, object2camera: np.ndarray, iteration: int) -> NormalEquations | None:
        """:meth:`linearize` at ``object2camera (4, 4)`` float64 numpy as the iterated update reads it: on the CPU
        by the frame's compiled passes (:meth:`_linearize_arrays`), elsewhere from the torch path's block."""
        if self._frame is None:
            return None
        s = self.settings
        level = min(iteration, len(s.considered_distances) - 1)
        if self._frame.arrays is None:
            block = self.linearize(torch.from_numpy(object2camera).to(self.scene.device), iteration)
            return None if block is None else NormalEquations.from_block(block)
        found = self._linearize_arrays(object2camera, level)
        if found is None:
            return None
        kept, correlation = found
        plan = self._frame.arrays
        sums = plan.sums.copy()
        return NormalEquations(self.name, plan.residuals[:kept].copy(), plan.rows[:, :kept].copy(),
                               plan.weights[:kept].copy(), s.standard_deviations[level], s.noise_floor, correlation,
                               sums[:36].reshape(6, 6), sums[36:42], float(sums[42]), float(sums[43]))

    def _linearize_arrays(self, pose: np.ndarray, level: int) -> tuple[int, float] | None:
        """The torch path's association, residuals (:func:`plane_distances`), Jacobian and weights at ``pose (4, 4)``
        float64 by the frame's compiled passes: ``(kept points, correlation)``, their residuals, Jacobian rows,
        weights and sums in the plan's buffers; None when fewer than ``min_points`` associate (same values;
        ``test_sparse_depth_numpy_path``)."""
        s, plan = self.settings, self._frame.arrays
        if self._unseen_array.shape[1] > 0:
            plan.unseen[:] = self._unseen_projection(pose[:3, :3])
        p, n, q = plan.associate(pose, s.hand_margin)
        kept, pixels = plan.reduce(plane_distances(p, n, q, 0), s.considered_distances[level], s.robust_scales[level],
                                   s.robust)
        if kept < s.min_points:
            return None
        # points that read the same depth pixel share its noise: residuals per independent pixel
        return kept, s.correlation * kept / max(pixels, 1)

    def _unseen_projection(self, rotation: np.ndarray) -> np.ndarray:
        """``(6, 6)`` ``S (I - Y Y^T) S^-1``: Jacobian rows ``J^T (6, k)`` over ``(rho, phi)`` without their part
        along the unseen twists ``Y`` posed by ``rotation (3, 3)`` (:func:`without_unseen`; ``S = diag(1, 1, 1, r,
        r, r)``)."""
        U = self._unseen_array
        Y = np.concatenate((rotation @ U[:3], rotation @ U[3:]), 0)  # (6, k) camera frame, orthonormal
        scale = np.array([1.0, 1.0, 1.0, self.radius, self.radius, self.radius])
        return (np.eye(6) - Y @ Y.T) * scale[:, None] / scale[None, :]
