"""Joint hand-object optimizer (paper Sec. III-D): Adam over MANO hand parameters and the object pose on
rendering, keypoint and physics terms (see :mod:`handypriors_core.estimation.hand_object`).

The terms are the object tracker's (:mod:`..modalities`: silhouette, penetration, sliding, con, smo; robust
penalties of :mod:`..residuals`) evaluated on the MANO hand's vertices, with the contact queries, renderer and
object samples of one :class:`~..scene.HandObjectScene`; the pose moves by the refiner's retraction
(:func:`~..refiner.apply_pose_delta`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from ...checks import check_finite, check_shape
from ...errors import InvalidValueError, ShapeError
from ...geometry.camera import square_crop_box
from ...geometry.transforms import invert_transform, transform_points
from ...models.mano import ManoHand
from ...models.rigid_object import RigidObject
from ...physics.settings import ContactSettings
from ...render.renderer import join_meshes
from ...render.settings import RenderSettings
from .. import modalities, residuals
from ..adam_steps import AdamRun
from ..modalities import TemporalContext
from ..observation import crop_mask
from ..refiner import apply_pose_delta
from ..scene import HAND, OBJECT, HandObjectScene
from .params import _PARAM_NAMES, HandObjectObservation, ManoParams
from .settings import _PHYSICS_TERMS, HandObjectSettings

#: ``pose (B, 4, 4)`` moved by ``delta (B, 6) = (rho [m], phi [rad])``: the refiner's retraction (one definition).
pose_delta = apply_pose_delta


@dataclass
class HandObjectResult:
    """Outcome of one frame's optimization (detached tensors on the optimizer's device).

    Attributes:
        params: :class:`ManoParams` of the hand (batch 1). object2camera: ``(4, 4)``.
        loss, initial_loss: weighted total at the best and at the first iterate; terms: best weighted terms.
        iterations: Adam steps taken; elapsed [s]; stopped: ``"iterations"``, ``"converged"``,
            ``"non_finite_loss"``, ``"non_finite_gradient"`` or ``"no_gradient"``.
        contact_weights: ``(1, C)`` 1 for the hand contact vertices within ``contact_distance`` of the object.
        contacts_object: ``(1, C, 3)`` [m] those vertices in the object frame (for the next frame's sliding term).
    """

    params: ManoParams
    object2camera: torch.Tensor
    loss: float
    initial_loss: float
    iterations: int
    elapsed: float
    stopped: str
    terms: dict[str, float] = field(default_factory=dict)
    contact_weights: torch.Tensor | None = None
    contacts_object: torch.Tensor | None = None


class HandObjectOptimizer:
    """Adam over MANO hand parameters and the object pose on rendering, keypoint and physics terms.

    Args:
        hand: the MANO model (its dtype and device are used; float32 recommended).
        obj: the object model (object frame, metres).
        settings: see :class:`HandObjectSettings`.
        render_settings, contact_settings: component settings (defaults if None).
    """

    def __init__(self, hand: ManoHand, obj: RigidObject, settings: HandObjectSettings | None = None,
                 render_settings: RenderSettings | None = None, contact_settings: ContactSettings | None = None):
        self.hand = hand
        self.settings = settings if settings is not None else HandObjectSettings()
        self.device, self.dtype = hand.device, hand.dtype
        #: the contact queries, renderer and object samples of the object tracker's terms
        self.scene = HandObjectScene(hand, obj, self.device, render_settings, contact_settings,
                                     object_samples=self.settings.object_samples, dtype=self.dtype)
        self.object = self.scene.object
        self.renderer = self.scene.renderer
        self.object_sdf = self.scene.object_sdf
        self.hand_geometry = self.scene.hand_geometry
        self.object_samples = self.scene.object_samples

    # ------------------------------------------------------------------------------------------ helpers
    def active_terms(self) -> list[str]:
        """Terms of the settings whose weight is positive."""
        s = self.settings
        return [t for t in s.terms if s.weight(t) > 0 and (t != "shape_prior" or s.optimize_betas)]

    def object_points(self, object2camera: torch.Tensor) -> torch.Tensor:
        """Object surface samples ``(B, S, 3)`` [m, camera frame]."""
        return self.scene.object_sample_points(object2camera)

    def region_of_interest(self, observation: HandObjectObservation, params: ManoParams,
                           object2camera: torch.Tensor) -> tuple[float, float, float, float]:
        """Square ROI [px] around the projected hand and object at the given estimate."""
        with torch.no_grad():
            cam = observation.camera.to(self.device, self.dtype)
            verts = params.forward(self.hand).vertices[0]
            obj = transform_points(object2camera[None], self.object.verts[None])[0]
        s = self.settings
        return square_crop_box(cam, torch.cat((verts, obj)), s.roi_margin, s.roi_min_box)

    def contact_state(self, params: ManoParams, object2camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, C)`` contact weights of the hand contact vertices and ``(1, C, 3)`` their object-frame positions."""
        with torch.no_grad():
            pts = params.forward(self.hand).vertices[:, self.hand.contact_vertex_ids]
            pose = object2camera[None].to(pts)
            d = self.object_sdf.signed_distance(pts, pose).distance
            weights = (d < self.settings.contact_distance).to(pts.dtype)
            return weights, transform_points(invert_transform(pose), pts)

    # ------------------------------------------------------------------------------------------- losses
    def losses(self, params: ManoParams, object2camera: torch.Tensor, observation: HandObjectObservation,
               roi: tuple[float, float, float, float], sigma: float, init: ManoParams | None = None,
               previous: Sequence[HandObjectResult] = (), crops: dict | None = None) -> dict[str, torch.Tensor]:
        """Unweighted value of each active term for ``B`` candidates: ``{name: 0-dim tensor}`` (batch mean).

        Args:
            params: ``(B)`` hand parameters; object2camera: ``(B, 4, 4)``.
            observation: the frame; roi: the crop box [px]; sigma: rasterizer sharpness [px^2].
            init: the initialisation (pose prior); previous: results of earlier frames, oldest first.
            crops: cached ROI crops of the masks (from :meth:`_crops`).
        """
        s = self.settings
        terms = self.active_terms()
        B = object2camera.shape[0]
        out = params.forward(self.hand)
        verts = out.vertices
        obj_verts = transform_points(object2camera, self.object.verts.expand(B, -1, -1))
        cam = observation.camera.to(self.device, self.dtype)
        size = s.roi_size
        box_edge = roi[2] - roi[0]
        crops = crops if crops is not None else self._crops(observation, roi)
        result: dict[str, torch.Tensor] = {}
        if "mask" in terms and (crops["hand"] is not None or crops["object"] is not None):
            roi_cam = cam.crop_and_resize(roi, size, size)
            v, f, inst = join_meshes([(verts, self.hand.faces), (obj_verts, self.object.faces)])
            render = self.renderer(v, f, roi_cam, face_instance=inst, num_instances=2, sigma=sigma)
            loss = verts.new_zeros(())
            for k, key in ((HAND, "hand"), (OBJECT, "object")):
                if crops[key] is not None:
                    loss = loss + modalities.silhouette_loss(render.visible[:, k], crops[key]).mean()
            result["mask"] = loss
        if "keypoints" in terms and observation.keypoints is not None:
            conf = observation.confidences().to(self.device, self.dtype)
            r = residuals.reprojection_residuals(cam, out.keypoints, observation.keypoints.to(out.keypoints))
            r2 = (r / box_edge).pow(2).sum(-1)  # (B, 21), ROI edge units
            rho = 2.0 * residuals.robust_loss_squared(r2, s.keypoint_scale, "geman_mcclure")  # r2 / (r2 + c^2)
            result["keypoints"] = (rho * conf).sum(-1).mean() / conf.sum().clamp_min(1e-9)
        if "penetration" in terms:
            d_hand = self.object_sdf.signed_distance(verts, object2camera).distance
            result["penetration"] = modalities.penetration_penalty(self.scene, d_hand, verts, object2camera,
                                                                   s.weights.penetration_reverse_weight)
        prev = list(previous)[-2:]
        ctx = TemporalContext(previous_poses=[p.object2camera for p in prev])
        if "sliding" in terms and prev and prev[-1].contact_weights is not None \
                and bool((prev[-1].contact_weights > 0).any()):
            result["sliding"] = modalities.contact_sliding(object2camera, verts[:, self.hand.contact_vertex_ids],
                                                           prev[-1].contacts_object.to(verts),
                                                           prev[-1].contact_weights.to(verts))
        if "con" in terms and prev:
            p1 = prev[-1]
            theta = torch.cat((params.global_orient, params.hand_pose), 1)
            theta1 = torch.cat((p1.params.global_orient, p1.params.hand_pose), 1).to(theta).expand_as(theta)
            result["con"] = modalities.consistency_term(self.scene, object2camera, ctx, theta, theta1)
        if "smo" in terms and len(prev) >= 2:
            result["smo"] = modalities.smoothness_term(self.scene, object2camera, ctx)
        if "pose_prior" in terms and init is not None:
            result["pose_prior"] = ((params.hand_pose - init.hand_pose.to(params.hand_pose)) ** 2).mean()
        if "shape_prior" in terms and s.optimize_betas:
            result["shape_prior"] = (params.betas ** 2).mean()
        return result

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the terms."""
        total = None
        for name, value in terms.items():
            part = self.settings.weight(name) * value
            total = part if total is None else total + part
        return total if total is not None else torch.zeros((), device=self.device, dtype=self.dtype)

    def _crops(self, observation: HandObjectObservation, roi) -> dict:
        size = self.settings.roi_size
        return {key: None if m is None else crop_mask(m.to(self.device, self.dtype).float(), roi, size)
                for key, m in (("hand", observation.hand_mask), ("object", observation.object_mask))}

    # ------------------------------------------------------------------------------------- optimization
    def optimize(self, observation: HandObjectObservation, init_params: ManoParams,
                 init_object2camera: torch.Tensor, previous: Sequence[HandObjectResult] = (),
                 iterations: int | None = None) -> HandObjectResult:
        """Optimize one frame from ``init_params`` (batch 1, e.g. a network's output) and ``init_object2camera
        (4, 4)``; ``previous`` are the results of earlier frames (temporal and sliding terms)."""
        s = self.settings
        check_shape(init_object2camera, (4, 4), "init_object2camera")
        check_finite(init_object2camera, "init_object2camera")
        if init_params.batch_size != 1:
            raise ShapeError(f"init_params must hold one hand; got {init_params.batch_size}")
        init_params = init_params.to(self.device, self.dtype)
        init_params.check(self.hand, "init_params")
        iterations = s.iterations if iterations is None else int(iterations)
        start = time.perf_counter()
        pose0 = init_object2camera.to(self.device, self.dtype)[None].detach()
        roi = self.region_of_interest(observation, init_params, pose0[0])
        crops = self._crops(observation, roi)
        zeros = {n: torch.zeros_like(getattr(init_params, n), requires_grad=True) for n in _PARAM_NAMES}
        d_object = torch.zeros(1, 6, device=self.device, dtype=self.dtype, requires_grad=True)
        groups = []
        if s.optimize_hand_global:
            groups += [{"params": [zeros["global_orient"]], "lr": s.lr_rotation},
                       {"params": [zeros["transl"]], "lr": s.lr_translation}]
        if s.optimize_hand_pose:
            groups.append({"params": [zeros["hand_pose"]], "lr": s.lr_hand_pose})
        if s.optimize_betas:
            groups.append({"params": [zeros["betas"]], "lr": s.lr_betas})
        if s.optimize_object:
            groups.append({"params": [d_object], "lr": 1.0})
        base_lr = [g["lr"] for g in groups]
        optimizer = torch.optim.Adam(groups) if groups else None
        object_scale = torch.tensor([s.lr_translation] * 3 + [s.lr_rotation] * 3, device=self.device,
                                    dtype=self.dtype)

        def current() -> tuple[ManoParams, torch.Tensor]:
            p = ManoParams(*(getattr(init_params, n) + zeros[n] for n in _PARAM_NAMES))
            return p, pose_delta(pose0, d_object * object_scale)

        best = (math.inf, init_params.detach(), pose0[0].clone(), {})
        run, it = AdamRun(optimizer, s.convergence_tolerance, patience=5), 0
        for it in range(iterations + 1):
            frac = it / max(iterations, 1)
            sigma = s.sigma_start * (s.sigma_end / s.sigma_start) ** frac
            if optimizer is not None:
                for g, lr in zip(optimizer.param_groups, base_lr):
                    g["lr"] = lr * s.lr_final_fraction ** frac
            params, pose = current()
            terms = self.losses(params, pose, observation, roi, sigma, init_params, previous, crops)
            full = self.total(terms)
            value = float(full.detach())
            ramp = min(1.0, frac / s.physics_ramp) if s.physics_ramp > 0 else 1.0
            loss = full if ramp >= 1.0 else full - (1.0 - ramp) * self.total(
                {k: v for k, v in terms.items() if k in _PHYSICS_TERMS})
            if not run.finite(value):
                break
            if value < best[0]:
                best = (value, params.detach(), pose[0].detach().clone(),
                        {k: float(s.weight(k) * v.detach()) for k, v in terms.items()})
            if it == iterations:
                break
            if not run.step(value, loss):
                break
        weights, contacts = self.contact_state(best[1], best[2])
        return HandObjectResult(params=best[1], object2camera=best[2], loss=best[0], initial_loss=run.initial,
                                iterations=it, elapsed=time.perf_counter() - start, stopped=run.stopped,
                                terms=best[3], contact_weights=weights, contacts_object=contacts)

    def optimize_sequence(self, observations: Sequence[HandObjectObservation], init_params: ManoParams,
                          init_object2camera: torch.Tensor, object_init: Literal["given", "previous"] = "previous",
                          iterations: int | None = None) -> list[HandObjectResult]:
        """Optimize frames in order, each with the temporal terms against the results before it.

        Args:
            observations: ``T`` frames. init_params: ``(T)`` per-frame hand initialisations (e.g. a network's).
            init_object2camera: ``(4, 4)`` for the first frame, or ``(T, 4, 4)`` per frame.
            object_init: ``"previous"`` starts each later frame's object from the previous result;
                ``"given"`` uses ``init_object2camera[t]`` (needs ``(T, 4, 4)``).
        """
        T = len(observations)
        if init_params.batch_size != T:
            raise ShapeError(f"init_params holds {init_params.batch_size} hands for {T} observations")
        per_frame = init_object2camera.dim() == 3
        if per_frame:
            check_shape(init_object2camera, (T, 4, 4), "init_object2camera")
        elif object_init == "given" and T > 1:
            raise ShapeError("object_init='given' needs init_object2camera of shape (T, 4, 4)")
        if object_init not in ("given", "previous"):
            raise InvalidValueError(f"object_init must be 'given' or 'previous'; got {object_init!r}")
        results: list[HandObjectResult] = []
        for t, obs in enumerate(observations):
            if t == 0 or object_init == "given":
                pose = init_object2camera[t] if per_frame else init_object2camera
            else:
                pose = results[-1].object2camera
            results.append(self.optimize(obs, init_params[t], pose, results[-2:], iterations))
        return results
