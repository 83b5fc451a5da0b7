"""Initial object pose without a pre-trained network: a coarse global search over SO(3), then refinement.

The paper initialises from a pre-trained pose network; none can be installed here. When no initial pose is
given (parameter, PoseStamped topic or file), the first frame's object mask is matched by rendering:

1. **Candidates**: ``rotations`` rotations spread uniformly over SO(3) (a super-Fibonacci spiral of unit
   quaternions, deterministic), or, with ``near=pose`` (re-initialisation after loss of track), the same spiral
   shrunk to a ball of ``near_rotation`` rad around the given rotation.
2. **Translations** consistent with the mask: on the ray through the mask centroid, at the depth of the mask's
   median observed depth plus each candidate's own centre-to-visible-surface offset (aligned depth), or at the
   depth where the candidate's silhouette area matches the mask's (RGB only). One correction pass re-centres
   each candidate's *visible* silhouette (the known hand occludes it) on the mask centroid and re-fits depth
   or area.
3. **Score** (batched z-buffer renders of the object at ``resolution`` px over one crop around the mask, the
   hand rendered once and occluding): silhouette IoU with the mask, blended with the fraction of visible
   pixels whose rendered depth agrees with the observed depth, minus ``penetration_weight`` times the fraction
   of the hand's surface points inside the object (checked for the best ``penetration_candidates``).
4. **Refine** the ``top_k`` best distinct candidates by a batched random local search at twice the
   resolution (perturbations shrinking each round; optionally followed by the Adam refiner with the mask, depth
   and penetration terms) and return the best by the same score.

Without any mask (no external mask or segmenter on the first frame), :func:`~.initial_mask.bootstrap_mask`
proposes one from what the robot knows: with depth, the depth pixels near the hand's grasp surfaces that are not
the hand; RGB only, a colour model seeded between the fingers. Settings: :class:`~.settings.InitializationSettings`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..geometry.camera import PinholeCamera, crop_and_resize_image
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, quaternion_to_matrix
from ..geometry.transforms import make_transform, transform_points
from ..io.frame import Frame
from ..priors.losses import LossWeights
from ..render.renderer import Renderer
from .initial_mask import automatic_mask, bootstrap_mask
from .modalities import TemporalContext
from .observation import prepare_observation
from .refiner import PoseRefiner
from .scene import HandObjectScene, PosedHand
from .settings import (
    DepthSettings,
    InitializationSettings,
    RefineSettings,
    ROISettings,
    load_initialization_settings,
)

__all__ = [
    "GlobalPoseSearch",
    "InitializationSettings",
    "SearchResult",
    "automatic_mask",
    "bootstrap_mask",
    "global_search",
    "load_initialization_settings",
    "so3_samples",
]

_F32 = torch.float32


@dataclass
class SearchResult:
    """Outcome of a global search.

    Attributes:
        object2camera: ``(4, 4)`` float64 best pose (CPU), or None when the search could not run.
        score: its score in [0, 1] (silhouette IoU blended with depth agreement, minus penetration); 0 if none.
        iou: silhouette IoU of the best pose with the mask (fine resolution).
        status: ``"ok"`` or why there is no pose (``"mask has 3 object pixels (< 30)"``...).
        elapsed: wall time [s]; timings: per stage [s].
        candidates: ``(K, 4, 4)`` the refined candidates (best first) and candidate_scores ``(K,)``.
    """

    object2camera: torch.Tensor | None
    score: float
    iou: float = 0.0
    status: str = "ok"
    elapsed: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    candidates: torch.Tensor | None = None
    candidate_scores: torch.Tensor | None = None

    @property
    def ok(self) -> bool:
        return self.object2camera is not None


def so3_samples(count: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(count, 3, 3)`` rotations spread uniformly over SO(3) (super-Fibonacci spiral of unit quaternions).

    Sample ``i`` uses ``s = i + 0.5``, radii ``sqrt(s / n)`` and ``sqrt(1 - s / n)`` and angles ``2 pi s / phi``,
    ``2 pi s / psi`` with ``phi = sqrt(2)`` and ``psi`` the root of ``psi^4 = psi + 4`` (Alexa, CVPR 2022);
    ``seed`` shifts the sequence.
    """
    phi = math.sqrt(2.0)
    psi = 1.533751168755204288118041
    s = torch.arange(count, dtype=torch.float64) + 0.5 + float(seed) * 0.6180339887498949
    s = torch.remainder(s, float(count))
    r = torch.sqrt(s / count)
    R = torch.sqrt(1.0 - s / count)
    alpha = 2 * math.pi * s / phi
    beta = 2 * math.pi * s / psi
    q = torch.stack((r * torch.sin(alpha), r * torch.cos(alpha), R * torch.sin(beta), R * torch.cos(beta)), -1)
    return quaternion_to_matrix(q).to(dtype)


def _crop_nearest(image: torch.Tensor, box, size: int) -> torch.Tensor:
    """Nearest-neighbour crop of ``(H, W)`` (0 outside) to ``(size, size)``."""
    H, W = image.shape
    x0, y0, x1, y1 = box
    c = torch.arange(size, device=image.device, dtype=_F32) + 0.5
    xs = (x0 + c * (x1 - x0) / size - 0.5).round().long()
    ys = (y0 + c * (y1 - y0) / size - 0.5).round().long()
    inside = ((ys >= 0) & (ys < H))[:, None] & ((xs >= 0) & (xs < W))[None, :]
    crop = image[ys.clamp(0, H - 1)][:, xs.clamp(0, W - 1)]
    return torch.where(inside, crop, torch.zeros_like(crop))


class GlobalPoseSearch:
    """Coarse-to-fine search of the object pose that explains a mask (see the module docstring).

    Args:
        scene: bodies, renderer and contact queries.
        settings: :class:`InitializationSettings`.
        refine_weights: loss weights of the refinement (mask, depth, penetration are used).
    """

    def __init__(self, scene: HandObjectScene, settings: InitializationSettings | None = None,
                refine_weights: LossWeights | None = None) -> None:
        self.scene = scene
        self.settings = settings if settings is not None else InitializationSettings()
        s = self.settings
        self.rotations = so3_samples(s.rotations, s.seed).to(scene.device, _F32)
        w = refine_weights if refine_weights is not None else LossWeights(
            lambda_img=0.0, lambda_mask=1.0, lambda_depth=1.0, lambda_penetration=200.0)
        self.depth_settings = DepthSettings()
        self.refiner = PoseRefiner(scene, RefineSettings(terms=["mask", "depth", "penetration"],
                                                         iterations=s.refine_iterations, time_budget=0.0,
                                                         lr_translation=0.002, lr_rotation=0.03,
                                                         sigma_start=4.0, sigma_end=0.5), w, self.depth_settings)
        # object centre in its own frame and a size for area-based depth
        self._centre = torch.as_tensor(scene.object.center).to(scene.device, _F32)
        self._hand_points: torch.Tensor | None = None  # hand points checked for penetration (per search)
        # z-buffer renders of the candidates: the scene renderer's settings with small tiles (fewer faces
        # tested per pixel)
        rs = scene.renderer.settings
        self._renderer = Renderer(dataclasses.replace(rs, raster=dataclasses.replace(rs.raster, tile_size=4)))
        self._coarse_geometry = (scene.object.verts, scene.object_faces)
        if s.coarse_mesh == "convex_hull":
            import trimesh

            hull = trimesh.Trimesh(scene.object.verts.detach().cpu().double().numpy(),
                                   scene.object_faces.cpu().numpy(), process=False).convex_hull
            self._coarse_geometry = (torch.as_tensor(hull.vertices, dtype=_F32, device=scene.device),
                                     torch.as_tensor(hull.faces, dtype=torch.long, device=scene.device))

    # ------------------------------------------------------------------------------------------ renders
    def _render(self, poses: torch.Tensor, camera: PinholeCamera, hand_z: torch.Tensor, coarse: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Object-only z-buffer renders of ``poses (B, 4, 4)``: ``(full, visible, depth)``, each ``(B, S, S)``;
        ``visible`` is where the object is in front of the hand (``hand_z (1, S, S)``, 0 = no hand)."""
        verts, faces = self._coarse_geometry if coarse else (self.scene.object.verts, self.scene.object_faces)
        fulls, vis, depth = [], [], []
        for start in range(0, poses.shape[0], self.settings.chunk):  # chunks of candidates, not pixels
            p = poses[start:start + self.settings.chunk]
            with torch.no_grad():
                out = self._renderer.hard(transform_points(p, verts.expand(p.shape[0], -1, -1)), faces, camera)
            z = out.zbuf
            occluded = (hand_z > 0) & (hand_z < z)
            fulls.append(out.mask)
            vis.append(out.mask & ~occluded)
            depth.append(z)
        return torch.cat(fulls), torch.cat(vis), torch.cat(depth)

    def _score(self, visible: torch.Tensor, depth: torch.Tensor, target: torch.Tensor,
               observed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(score (B,), iou (B,))`` of visible silhouettes against the soft target mask (and depth)."""
        v = visible.float()
        inter = (v * target).sum((-1, -2))
        union = v.sum((-1, -2)) + target.sum() - inter
        iou = inter / union.clamp_min(1e-6)
        score = iou
        if observed is not None and self.settings.depth_weight > 0:
            valid = visible & (observed > 0)
            agree = valid & ((depth - observed).abs() < self.settings.depth_tolerance)
            frac = agree.sum((-1, -2)).float() / valid.sum((-1, -2)).clamp_min(1).float()
            frac = torch.where(valid.sum((-1, -2)) > 0, frac, torch.zeros_like(frac))
            w = self.settings.depth_weight
            score = (1 - w) * iou + w * frac
        return score, iou

    def _select_hand_points(self, poses: torch.Tensor, hand: PosedHand) -> None:
        """Keep the hand points that some candidate of ``poses (B, 4, 4)`` could reach (evenly subsampled)."""
        pts = torch.cat((hand.surface_points, hand.contact_points), 1)[0]
        centres = poses[:, :3, :3] @ self._centre + poses[:, :3, 3]
        radius = 0.5 * self.scene.object.diameter + 0.01
        near = torch.zeros(pts.shape[0], dtype=torch.bool, device=pts.device)
        for start in range(0, centres.shape[0], 1024):  # chunks of candidates bound the distance matrix
            near |= (torch.cdist(pts, centres[start:start + 1024]) < radius).any(1)
        keep = pts[near]
        limit = self.settings.penetration_points
        if keep.shape[0] > limit:
            keep = keep[torch.linspace(0, keep.shape[0] - 1, limit, device=keep.device).round().long()]
        self._hand_points = keep[None]

    def _penetration(self, poses: torch.Tensor, hand: PosedHand) -> torch.Tensor:
        """``(B,)`` fraction of the selected hand points deeper than the tolerance inside the object."""
        pts = self._hand_points
        if pts is None:
            self._select_hand_points(poses, hand)
            pts = self._hand_points
        if pts.shape[1] == 0:
            return poses.new_zeros(poses.shape[0])
        out = []
        for start in range(0, poses.shape[0], self.settings.chunk):
            p = poses[start:start + self.settings.chunk]
            d = self.scene.object_sdf.signed_distance(pts.expand(p.shape[0], -1, -1), p).distance
            out.append((d < -self.settings.penetration_tolerance).float().mean(-1))
        return torch.cat(out)

    # ------------------------------------------------------------------------------------------ search
    def _crop(self, frame: Frame, mask: torch.Tensor, box, size: int, hand: PosedHand):
        """Camera, target mask, observed depth (or None) and hand depth of the crop ``box`` at ``size`` px."""
        device = self.scene.device
        camera = frame.camera.to(device, _F32).crop_and_resize(box, size, size)
        m = mask[None, None]
        shrink = (box[2] - box[0]) / size
        if shrink > 1.5:  # area-style anti-aliasing
            k = round(shrink) | 1
            m = F.avg_pool2d(m, k, 1, k // 2, count_include_pad=False)
        target = crop_and_resize_image(m, box, size, size)[0, 0].clamp(0, 1)
        observed = None
        if frame.depth is not None:
            observed = _crop_nearest(torch.nan_to_num(frame.depth.to(device, _F32), nan=0.0), box, size)
            if not bool((observed > 0).any()):
                observed = None
        with torch.no_grad():
            hand_z = self.scene.renderer.hard(hand.verts, self.scene.hand_faces, camera).zbuf
        return camera, target, observed, hand_z

    def _evaluate(self, poses: torch.Tensor, crop, hand: PosedHand, near: torch.Tensor | None,
                  penetration: bool = True, coarse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(score (B,), iou (B,))`` of ``poses`` in a crop from :meth:`_crop`."""
        camera, target, observed, hand_z = crop
        _, vis, depth = self._render(poses, camera, hand_z, coarse)
        score, iou = self._score(vis, depth, target, observed)
        if penetration and self.settings.penetration_weight > 0:
            score = score - self.settings.penetration_weight * self._penetration(poses, hand)
        if near is not None:
            far = (poses[:, :3, 3] - near.to(poses)[:3, 3]).norm(dim=-1) > self.settings.near_translation
            score = score - far.float()
        return score, iou

    def search(self, frame: Frame, mask: torch.Tensor | None, hand: PosedHand | None = None,
               near: torch.Tensor | None = None) -> SearchResult:
        """Find the object pose explaining ``mask (H, W)`` in ``frame`` (see the module docstring).

        Args:
            frame: the frame (RGB, optional depth, joint angles, hand2camera, camera).
            mask: object mask in [0, 1] (external, segmenter or :func:`bootstrap_mask`); None -> no search.
            hand: the posed hand (posed from the frame when None).
            near: ``(4, 4)`` search only around this pose (re-initialisation after loss of track).
        """
        t0 = time.perf_counter()
        s = self.settings
        scene = self.scene
        device = scene.device
        timings: dict[str, float] = {}

        def failed(status: str) -> SearchResult:
            return SearchResult(None, 0.0, status=status, elapsed=time.perf_counter() - t0)

        if mask is None:
            return failed("no object mask")
        mask = torch.as_tensor(mask).to(device, _F32)
        if mask.shape != (frame.height, frame.width):
            return failed(f"mask size {tuple(mask.shape)} differs from the image {(frame.height, frame.width)}")
        mask = torch.nan_to_num(mask, nan=0.0).clamp(0, 1)
        binary = mask > 0.5
        count = int(binary.sum())
        if count < s.min_mask_pixels:
            return failed(f"mask has {count} object pixels (< {s.min_mask_pixels})")
        if near is not None:
            near = torch.as_tensor(near).to(device, _F32)
            if near.shape != (4, 4) or not bool(torch.isfinite(near).all()):
                return failed("near pose must be a finite (4, 4) matrix")
        hand = hand if hand is not None else scene.pose_hand(frame.joint_angles, frame.hand2camera)
        camera = frame.camera.to(device, _F32)
        ys, xs = torch.nonzero(binary, as_tuple=True)
        side = float(max(int(xs.max() - xs.min()), int(ys.max() - ys.min())) + 1)
        half = 0.5 * side * (1 + 2 * s.margin)
        cu, cv = 0.5 * float(xs.max() + xs.min()), 0.5 * float(ys.max() + ys.min())
        box = (cu - half, cv - half, cu + half, cv + half)
        with torch.no_grad():
            coarse = self._crop(frame, mask, box, max(16, s.resolution // 2), hand)
            crop = self._crop(frame, mask, box, s.resolution, hand)
            fine = self._crop(frame, mask, box, s.fine_resolution, hand)
            timings["setup"] = time.perf_counter() - t0
            t = time.perf_counter()
            poses = self._initial_poses(camera, crop[0], crop[1], crop[2], near)
            # a correction pass at half resolution: centre the visible silhouette on the mask, fit depth or area
            full, vis, depth = self._render(poses, coarse[0], coarse[3], coarse=True)
            poses = self._correct(poses, coarse[0], vis, full, depth, coarse[1], coarse[2])
            score, _ = self._evaluate(poses, crop, hand, near, penetration=False, coarse=True)
            timings["coarse"] = time.perf_counter() - t
            t = time.perf_counter()
            self._select_hand_points(poses, hand)
            best = torch.topk(score, min(s.penetration_candidates, poses.shape[0])).indices
            if s.penetration_weight > 0:
                score[best] = score[best] - s.penetration_weight * self._penetration(poses[best], hand)
            chosen = self._distinct(poses, score, best)
            timings["penetration"] = time.perf_counter() - t
            t = time.perf_counter()
            cand = self._local_refine(poses[chosen], fine, hand, near)
            timings["local"] = time.perf_counter() - t
        t = time.perf_counter()
        if s.refine_iterations > 0:
            cand = torch.stack([self._refine(frame, p, mask, hand) for p in cand])
        timings["refine"] = time.perf_counter() - t
        with torch.no_grad():
            final, final_iou = self._evaluate(cand, fine, hand, near)
        self._hand_points = None
        order = torch.argsort(final, descending=True)
        return SearchResult(object2camera=cand[order[0]].double().cpu(), score=float(final[order[0]].clamp(0, 1)),
                            iou=float(final_iou[order[0]]), status="ok", elapsed=time.perf_counter() - t0,
                            timings=timings, candidates=cand[order].double().cpu(),
                            candidate_scores=final[order].cpu())

    def _initial_poses(self, camera: PinholeCamera, roi: PinholeCamera, target: torch.Tensor,
                       observed: torch.Tensor | None, near: torch.Tensor | None) -> torch.Tensor:
        """Candidate poses ``(N, 4, 4)``: the rotations at a translation on the mask's centroid ray."""
        device = self.scene.device
        R = self.rotations
        if near is not None:
            local = matrix_to_axis_angle(R.double()).float() * (self.settings.near_rotation / math.pi)
            R = torch.cat((near[:3, :3][None], near[:3, :3] @ axis_angle_to_matrix(local)), 0)
        S = target.shape[-1]
        grid = torch.arange(S, device=device, dtype=_F32)
        total = target.sum().clamp_min(1e-6)
        u = float((target.sum(0) * grid).sum() / total)
        v = float((target.sum(1) * grid).sum() / total)
        ray = torch.tensor([(u - float(roi.cx)) / float(roi.fx), (v - float(roi.cy)) / float(roi.fy), 1.0],
                           device=device)
        d = self.scene.object.diameter
        if observed is not None and bool(((observed > 0) & (target > 0.5)).any()):
            z = float(observed[(observed > 0) & (target > 0.5)].median()) + 0.25 * d
        else:  # area-based: a typical view of the object covers about (0.55 d)^2
            z = float(roi.fx) * 0.55 * d / math.sqrt(max(float(total), 1.0))
        if near is not None:
            z = float(near[2, 3])
        t = (ray * z)[None] - (R @ self._centre)  # object centre on the ray
        return make_transform(R, t)

    def _correct(self, poses: torch.Tensor, roi: PinholeCamera, vis: torch.Tensor, full: torch.Tensor,
                depth: torch.Tensor, target: torch.Tensor, observed: torch.Tensor | None) -> torch.Tensor:
        """Move each candidate so its visible silhouette centroid falls on the mask's, and fit its depth."""
        S = target.shape[-1]
        grid = torch.arange(S, device=poses.device, dtype=_F32)
        total = target.sum().clamp_min(1e-6)
        tu = (target.sum(0) * grid).sum() / total
        tv = (target.sum(1) * grid).sum() / total
        v = vis.float()
        use = torch.where(v.sum((-1, -2), keepdim=True) > 0, v, full.float())
        area = use.sum((-1, -2))
        seen = area > 0
        area = area.clamp_min(1.0)
        cu = (use.sum(-2) * grid).sum(-1) / area
        cv = (use.sum(-1) * grid).sum(-1) / area
        t = poses[:, :3, 3]
        z = t[:, 2].clamp_min(1e-3)
        if observed is not None and bool(((observed > 0) & (target > 0.5)).any()):
            # observed median depth over the mask against each candidate's median rendered depth
            z_obs = observed[(observed > 0) & (target > 0.5)].median()
            zr = torch.where(use > 0, depth, torch.full_like(depth, float("nan"))).flatten(1)
            z_ren = torch.nanmedian(zr, dim=1).values
            dz = torch.where(torch.isfinite(z_ren), z_obs - z_ren, torch.zeros_like(z_ren))
        else:
            dz = z * (torch.sqrt(area / total) - 1.0)  # silhouette area ~ 1 / z^2
        z_new = torch.where(seen, (z + dz).clamp(0.05, 10.0), z)
        scale = z_new / z
        x = torch.where(seen, t[:, 0] + (tu - cu) * z / float(roi.fx), t[:, 0]) * scale
        y = torch.where(seen, t[:, 1] + (tv - cv) * z / float(roi.fy), t[:, 1]) * scale
        out = poses.clone()
        out[:, :3, 3] = torch.stack((x, y, z_new), -1)
        return out

    def _distinct(self, poses: torch.Tensor, score: torch.Tensor, pool: torch.Tensor) -> list[int]:
        """Indices of the ``top_k`` best candidates of ``pool``, pairwise rotated by at least
        ``distinct_rotation``."""
        order = pool[torch.argsort(score[pool], descending=True)]
        chosen: list[int] = []
        R = poses[:, :3, :3]
        for idx in order.tolist():  # at most penetration_candidates, a handful kept
            if chosen:
                rel = R[chosen].transpose(-1, -2) @ R[idx]
                cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
                if bool((torch.acos(cos) < self.settings.distinct_rotation).any()):
                    continue
            chosen.append(idx)
            if len(chosen) >= self.settings.top_k:
                break
        return chosen

    def _perturb(self, poses: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``poses (B, 4, 4)`` moved by ``delta (B, 6)`` (translation [m], rotation [rad] about the object centre,
        camera axes)."""
        R = axis_angle_to_matrix(delta[:, 3:]) @ poses[:, :3, :3]
        centre = poses[:, :3, :3] @ self._centre + poses[:, :3, 3]
        t = centre + delta[:, :3] - R @ self._centre
        return make_transform(R, t)

    def _local_refine(self, poses: torch.Tensor, crop, hand: PosedHand, near: torch.Tensor | None) -> torch.Tensor:
        """Batched random local search around each candidate, shrinking the step each round."""
        s = self.settings
        if s.local_rounds <= 0:
            return poses
        gen = torch.Generator().manual_seed(s.seed)
        K, M = poses.shape[0], s.local_samples
        current = poses.clone()
        cur_score, _ = self._evaluate(current, crop, hand, near)
        sigma = torch.tensor([s.local_translation] * 3 + [s.local_rotation] * 3, device=poses.device)
        for _ in range(s.local_rounds):  # a few rounds, each one batched render of K * M candidates
            delta = torch.randn(K, M, 6, generator=gen).to(poses.device) * sigma
            trial = self._perturb(current.repeat_interleave(M, 0), delta.reshape(-1, 6))
            score, _ = self._evaluate(trial, crop, hand, near)
            score = score.view(K, M)
            best, arg = score.max(1)
            better = best > cur_score
            pick = trial.view(K, M, 4, 4)[torch.arange(K, device=poses.device), arg]
            current = torch.where(better[:, None, None], pick, current)
            cur_score = torch.where(better, best, cur_score)
            sigma = sigma * s.local_shrink
        return current

    def _refine(self, frame: Frame, pose: torch.Tensor, mask: torch.Tensor, hand: PosedHand) -> torch.Tensor:
        roi = ROISettings(size=self.settings.refine_roi, margin=0.3, min_box=32.0)
        obs = prepare_observation(frame, self.scene, pose, roi, self.depth_settings, object_mask=mask, hand=hand)
        result = self.refiner.refine(pose, obs, TemporalContext())
        if not bool(torch.isfinite(result.object2camera).all()):
            return pose
        return result.object2camera.to(pose)


def global_search(scene: HandObjectScene, frame: Frame, mask: torch.Tensor | None, hand: PosedHand | None = None,
                  settings: InitializationSettings | None = None, near: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor | None, float]:
    """``(object2camera (4, 4) float64 or None, score in [0, 1])``: :meth:`GlobalPoseSearch.search` in one call.

    Build a :class:`GlobalPoseSearch` once and reuse it when searching repeatedly (it caches the rotations).
    """
    result = GlobalPoseSearch(scene, settings).search(frame, mask, hand, near=near)
    return result.object2camera, result.score
