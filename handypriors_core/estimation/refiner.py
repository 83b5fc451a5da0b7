"""Optimisation-based refinement (paper Sec. III-D): Adam over the object pose with all loss terms.

The pose is parameterised minimally around its starting value with the filter's retraction
(:func:`~.pose_state.retract`): ``R = exp([phi]x) R0``, ``t = t0 + rho`` with ``(rho [m], phi [rad])``.
Optionally a small correction of hand2camera is optimised as well (calibration error), kept small by a
quadratic prior.

Per iteration: render hand + object at ROI resolution (the sharpness ``sigma`` follows a geometric
coarse-to-fine schedule), evaluate the selected terms (:mod:`.modalities`), take an Adam step. A step whose
loss or gradient is not finite is refused (the previous parameters are kept and the refinement stops), and
the last finite iterate is returned. The online refiner stops at its iteration count, its time budget or when
the loss stops changing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..geometry.rotations import axis_angle_to_matrix
from ..geometry.transforms import make_transform
from ..priors.losses import LossWeights
from .adam_steps import AdamRun
from .modalities import (
    TemporalContext,
    consistency_term,
    depth_loss,
    image_loss,
    mask_loss,
    penetration_term,
    render_scene,
    sliding_term,
    smoothness_term,
)
from .observation import Observation
from .scene import HandObjectScene
from .settings import DepthSettings, RefineSettings, SparseDepthSettings
from .sparse_depth import DepthAssociation, SparseDepthModality

__all__ = ["PoseRefiner", "RefineResult", "apply_pose_delta"]


def apply_pose_delta(pose: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``pose (B, 4, 4)`` moved by ``delta (B, 6) = (rho [m], phi [rad])``: ``R <- exp(phi) R``, ``t <- t + rho``."""
    R = axis_angle_to_matrix(delta[:, 3:]) @ pose[:, :3, :3]
    return make_transform(R, pose[:, :3, 3] + delta[:, :3])


@dataclass
class RefineResult:
    """Outcome of a refinement.

    Attributes:
        object2camera: ``(4, 4)`` refined pose (detached, float32).
        hand2camera_correction: ``(4, 4)`` correction applied to hand2camera (identity when not optimised).
        loss: final total loss; initial_loss: loss at the start.
        iterations: Adam steps taken; elapsed: wall time [s]; stopped: why it stopped.
        terms: final value of each weighted term.
    """

    object2camera: torch.Tensor
    hand2camera_correction: torch.Tensor
    loss: float
    initial_loss: float
    iterations: int
    elapsed: float
    stopped: str
    terms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def unchanged(cls, object2camera: torch.Tensor, reason: str) -> RefineResult:
        """No Adam step taken (``reason``): ``object2camera (4, 4)`` kept."""
        pose = object2camera.detach().float()
        return cls(pose, torch.eye(4, device=pose.device), math.nan, math.nan, 0, 0.0, reason)


class PoseRefiner:
    """Adam refinement of the object pose over the weighted loss terms."""

    def __init__(self, scene: HandObjectScene, settings: RefineSettings, weights: LossWeights,
                 depth_settings: DepthSettings, sparse_depth: SparseDepthSettings | None = None) -> None:
        self.scene = scene
        self.settings = settings
        self.weights = weights
        self.depth_settings = depth_settings
        #: the filter's point-to-plane depth residuals (same function), associated once per refinement
        self.sparse_depth = SparseDepthModality(scene, sparse_depth if sparse_depth is not None
                                                else SparseDepthSettings())

    def depth_association(self, obs: Observation, object2camera: torch.Tensor) -> DepthAssociation | None:
        """Model points associated with the depth image at ``object2camera (4, 4)`` within the depth settings'
        association distance (None without depth or when the depth term is off)."""
        if "depth" not in self.active_terms() or obs.frame.depth is None:
            return None
        return self.sparse_depth.association(obs, object2camera, self.depth_settings.association_distance)

    def active_terms(self) -> list[str]:
        """Terms selected in the settings whose weight is positive."""
        return [t for t in self.settings.terms if self.weights.weight(t) > 0]

    def losses(self, object2camera: torch.Tensor, obs: Observation, ctx: TemporalContext, sigma: float,
               depth_points: DepthAssociation | None) -> dict[str, torch.Tensor]:
        """Unweighted value of each active term for poses ``(B, 4, 4)``: ``{name: (B,) or ()}``."""
        terms = self.active_terms()
        need_render = any(t in terms for t in ("mask", "img")) or ("depth" in terms and obs.depth is not None)
        render = None
        if need_render:
            render = render_scene(self.scene, object2camera, obs, sigma, self.settings.gamma,
                                  depth="depth" in terms and obs.depth is not None, colour="img" in terms)
        out: dict[str, torch.Tensor] = {}
        for term in terms:
            if term == "mask":
                out[term] = mask_loss(render, obs)
            elif term == "img":
                out[term] = image_loss(render, obs)
            elif term == "depth":
                out[term] = depth_loss(render, obs, self.scene, object2camera, depth_points, self.depth_settings)
            elif term == "penetration":
                out[term] = penetration_term(self.scene, obs, object2camera, self.weights.penetration_reverse_weight)
            elif term == "sliding":
                out[term] = sliding_term(obs, object2camera, ctx)
            elif term == "con":
                out[term] = consistency_term(self.scene, object2camera, ctx)
            elif term == "smo":
                out[term] = smoothness_term(self.scene, object2camera, ctx)
        return out

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the terms (batch mean)."""
        total = None
        for name, value in terms.items():
            part = self.weights.weight(name) * value.mean()
            total = part if total is None else total + part
        return total if total is not None else torch.zeros((), device=self.scene.device)

    def refine(self, object2camera: torch.Tensor, obs: Observation, ctx: TemporalContext,
               iterations: int | None = None, time_budget: float | None = None) -> RefineResult:
        """Refine ``object2camera (4, 4)`` on one observation (online, per frame)."""
        s = self.settings
        iterations = s.iterations if iterations is None else iterations
        budget = s.time_budget if time_budget is None else time_budget
        start = time.perf_counter()
        device = self.scene.device
        pose0 = object2camera.to(device, torch.float32)[None].detach()
        delta = torch.zeros(1, 6, device=device, requires_grad=True)
        params = [{"params": [delta], "lr": 1.0}]
        hand_delta = None
        if s.optimize_hand2camera:
            hand_delta = torch.zeros(1, 6, device=device, requires_grad=True)
            params.append({"params": [hand_delta], "lr": s.lr_hand2camera})
        optimizer = torch.optim.Adam(params, lr=1.0)
        # per-component step sizes: Adam's step is ~lr in each coordinate, so scale the parameters instead
        scale = torch.tensor([s.lr_translation] * 3 + [s.lr_rotation] * 3, device=device)
        points = self.depth_association(obs, pose0[0])
        base_hand = obs.hand
        coarse = half_resolution(obs) if s.coarse_fraction > 0 and obs.roi_camera.width >= 32 else None
        best = (math.inf, pose0[0].clone(), torch.eye(4, device=device), {})
        run = AdamRun(optimizer, s.convergence_tolerance, patience=3)
        it = 0
        for it in range(iterations + 1):
            frac = it / max(iterations, 1)
            sigma = s.sigma_start * (s.sigma_end / s.sigma_start) ** frac
            decay = s.lr_final_fraction ** frac
            optimizer.param_groups[0]["lr"] = decay
            if hand_delta is not None:
                optimizer.param_groups[1]["lr"] = s.lr_hand2camera * decay
            pose = apply_pose_delta(pose0, delta * scale)
            obs_it = coarse if (coarse is not None and frac < s.coarse_fraction) else obs
            correction = torch.eye(4, device=device)
            if hand_delta is not None:
                correction = apply_pose_delta(torch.eye(4, device=device)[None], hand_delta)[0]
                obs_it = _with_corrected_hand(obs_it, base_hand, correction)
            terms = self.losses(pose, obs_it, ctx, sigma, points)
            loss = self.total(terms)
            if hand_delta is not None:
                loss = loss + s.hand2camera_prior * (hand_delta[:, :3] ** 2).sum() \
                    + s.hand2camera_prior * 0.01 * (hand_delta[:, 3:] ** 2).sum()
            value = float(loss.detach())
            if not run.finite(value):
                break
            # the latest finite iterate is the result: losses at different blur levels are not comparable, so
            # "best so far" would favour the blurry start; Adam's decaying steps settle the last iterates
            best = (value, pose[0].detach().clone(), correction.detach().clone(),
                    {k: float(self.weights.weight(k) * v.detach().mean()) for k, v in terms.items()})
            if it == iterations:
                break
            if budget > 0 and time.perf_counter() - start > budget:
                run.stopped = "time_budget"
                break
            if not run.step(value, loss):
                break
        return RefineResult(object2camera=best[1], hand2camera_correction=best[2], loss=best[0],
                            initial_loss=run.initial, iterations=it, elapsed=time.perf_counter() - start,
                            stopped=run.stopped, terms=best[3])


def half_resolution(obs: Observation) -> Observation:
    """``obs`` at half the ROI resolution (the coarse stage of the coarse-to-fine refinement).

    Mask and colour are 2x2 averages; depth is the mean of the valid depths of each 2x2 block (0 where none is
    valid); the ROI camera is scaled to match (pixel-centre convention kept).
    """
    from dataclasses import replace

    import torch.nn.functional as F

    mask = F.avg_pool2d(obs.mask[:, None], 2)[:, 0] if obs.mask is not None else None
    rgb = F.avg_pool2d(obs.rgb.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    depth = None
    if obs.depth is not None:
        valid = (obs.depth > 0).float()[:, None]
        total = F.avg_pool2d(obs.depth[:, None] * valid, 2)
        count = F.avg_pool2d(valid, 2)
        depth = torch.where(count > 0, total / count.clamp_min(1e-6), torch.zeros_like(total))[:, 0]
    return replace(obs, roi_camera=obs.roi_camera.scaled(0.5), mask=mask, rgb=rgb, depth=depth)


def _with_corrected_hand(obs: Observation, hand, correction: torch.Tensor) -> Observation:
    """``obs`` with its posed hand moved by ``correction (4, 4)`` applied in the camera frame."""
    from dataclasses import replace

    from ..geometry.transforms import transform_points

    T = correction[None]
    moved = replace(hand, verts=transform_points(T, hand.verts),
                    contact_points=transform_points(T, hand.contact_points),
                    surface_points=transform_points(T, hand.surface_points),
                    fingertip_centres=transform_points(T, hand.fingertip_centres),
                    hand2camera=correction @ hand.hand2camera)
    return replace(obs, hand=moved)
