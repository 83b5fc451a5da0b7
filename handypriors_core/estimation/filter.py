"""EKF tracking of the object pose (paper Sec. III-E, Fig. 3, Table I), over :class:`.ekf.ErrorStateEKF`.

State: ``object2camera`` on SE(3) with a 6x6 tangent covariance (``(rho [m], phi [rad])``, parent-frame
rotation; see :mod:`.pose_state`).

Motion model ``f`` (control ``u`` = the hand's joint angles and hand2camera): the quasistatic contact
dynamics of Eq. 9. The hand contact candidates that touched the object at t-1 are followed to t; the rigid
motion carrying them (weighted Kabsch) moves the object. Without enough contacts the pose is held
(constant pose) and the larger "free" process noise applies. ``F = blockdiag(R_m, R_m)`` in closed form
(:meth:`.ekf.ErrorStateEKF.predict_motion`).

Observation models (``FilterSettings.observations``), Jacobians by autodiff (one reverse-mode pass for the
point-wise fingertip and depth models, :func:`.linearization.linearize_rowwise`) or, for the rendered ones, by central
differences of one batched render of the 12 perturbed poses:

- ``fingertips``: fingertips that touched the object at t-1 stay on its surface: ``z = 0``,
  ``h = sdf(tip centre) - tip radius`` (the hand-side observation O_hand of Table I).
- ``centre``: the observed object mask's centroid [px] (and the mean masked depth [m] when depth exists: 3D)
  against the same statistics of the rendered visible silhouette (O_object).
- ``silhouette``: dense, every ROI pixel of the observed mask against the rendered visible silhouette,
  folded into the 6x6 normal equations (information form).
- ``depth``: dense, the signed distance of each associated depth point to the posed mesh (``z = 0``),
  robustly weighted (Cauchy), in information form.

Every update is gated (chi-square), and a rejected update leaves the state untouched.

Frames without depth use ``settings.colour_only`` (:meth:`.settings.FilterSettings.for_frame`: the region
modality and the contacts, a tighter motion prior); the first ``settle_frames`` frames after a (re)initialisation
add ``settle_observations`` (the region's contour sees poses whose depth fit is good but wrong).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..physics.quasistatic import contact_motion_array, contact_motion_fit_array
from ..physics.settings import QuasistaticSettings
from .contact_observation import ContactModality
from .ekf import EKFSettings, ErrorStateEKF, StepResult
from .hand_occlusion import HandOcclusion
from .iterated_update import CovarianceOptions, UpdateDiagnostics, iterated_update
from .linearization import linearize_rowwise
from .modalities import OBJECT, TemporalContext, render_scene
from .observation import Observation
from .pose_state import PoseState, retract
from .region import RegionModality
from .scene import HandObjectScene, PosedHand
from .settings import ITERATED_OBSERVATIONS, DepthSettings, FilterSettings, RegionSettings, SparseDepthSettings
from .sparse_depth import SparseDepthModality
from .texture import TextureModality
from .texture_settings import TextureSettings

__all__ = ["FilterStep", "ObjectPoseFilter", "contact_context"]

_F64 = torch.float64
_PERTURB_T, _PERTURB_R = 1e-3, 1e-2  # central-difference steps [m], [rad]


@dataclass
class FilterStep:
    """What one filter step did: motion-model use and each update's result."""

    used_contacts: bool
    updates: dict[str, StepResult]


def contact_context(scene: HandObjectScene, hand: PosedHand, object2camera: torch.Tensor, distance: float,
                    previous_poses: list[torch.Tensor], joint_angles: torch.Tensor,
                    arrays: bool = True) -> TemporalContext:
    """Contact bookkeeping after a frame: which hand candidates and fingertips touch the estimated object.

    On the CPU (unless ``arrays`` is False) the query and its algebra run in numpy (a few hundred points; the same
    values up to float32 rounding) and only the candidates within ``distance`` (the fingertip centres: within
    ``distance`` plus their radius) of the object's bounding box and 26 bounding planes are queried
    (``ObjectSDF.query_array``'s ``exact_within``): the others are farther than their threshold here, so their
    ``previous_contact_distances`` hold a lower bound (the distance to the box or those planes, above ``distance``)
    and their normals zeros; weights, fingertip contacts and the contacts within ``distance`` are the same."""
    C = hand.contact_points.shape[1]
    if arrays and scene.device.type == "cpu":
        pose = object2camera.detach().to("cpu", torch.float32).numpy()
        R, t = pose[:3, :3], pose[:3, 3]
        points = np.concatenate((hand.contact_points[0].detach().float().numpy(),
                                 hand.fingertip_centres[0].detach().float().numpy()), 0)
        points_obj = (points - t) @ R  # (C + T, 3)
        # exact distances where a threshold below can be met (contact_distance, tips: + their radius); farther
        # points keep a lower bound (their distance to the object's box or slabs): the same weights and contacts
        exact_within = np.full(len(points), distance)
        exact_within[C:] += scene.fingertip_radius
        signed, normal = scene.object_sdf.query_array(points_obj, exact_within=exact_within)
        candidates = signed[None, :C]
        tips = signed[C:] - np.float32(scene.fingertip_radius)
        normals = torch.from_numpy((normal[:C] @ R.T)[None])
        return _context(previous_poses, torch.from_numpy(candidates), torch.from_numpy(points_obj[None, :C]), hand,
                        normals, joint_angles, torch.from_numpy((candidates < distance).astype(np.float32)),
                        torch.from_numpy(tips < distance))
    pose = object2camera.to(scene.device, torch.float32)
    R, t = pose[:3, :3], pose[:3, 3]
    with torch.no_grad():  # one object-frame query for the contact candidates and the fingertips
        points_obj = (torch.cat((hand.contact_points, hand.fingertip_centres), 1) - t) @ R  # (1, C + T, 3)
        sd = scene.object_sdf.query(points_obj)
        candidates = sd.distance[:, :C]  # (1, C)
        tips = sd.distance[0, C:] - scene.fingertip_radius
        contacts_obj = points_obj[:, :C]
        normals = sd.normal[:, :C] @ R.T  # camera frame
    return _context(previous_poses, candidates, contacts_obj, hand, normals, joint_angles,
                    (candidates < distance).float(), tips < distance)


def _context(previous_poses, candidates, contacts_obj, hand, normals, joint_angles, weights, tips_in_contact
             ) -> TemporalContext:
    return TemporalContext(previous_poses=[p.detach().clone() for p in previous_poses[-2:]],
                           contact_weights=weights, contacts_object_prev=contacts_obj,
                           previous_contact_points=hand.contact_points.detach().clone(),
                           previous_contact_distances=candidates, previous_contact_normals=normals,
                           tips_in_contact=tips_in_contact, previous_joint_angles=joint_angles.detach().clone())


def _perturbations(device) -> torch.Tensor:
    """``(12, 6)`` +- steps along each tangent axis (central differences)."""
    steps = torch.tensor([_PERTURB_T] * 3 + [_PERTURB_R] * 3, dtype=_F64, device=device)
    eye = torch.diag(steps)
    return torch.cat((eye, -eye), 0)


class ObjectPoseFilter:
    """EKF over the object pose with the quasistatic motion model and the selected observations."""

    def __init__(self, scene: HandObjectScene, settings: FilterSettings, depth_settings: DepthSettings,
                 quasistatic: QuasistaticSettings | None = None,
                 sparse_depth: SparseDepthSettings | None = None, region: RegionSettings | None = None,
                 texture: TextureSettings | None = None) -> None:
        self.scene = scene
        self.settings = settings
        self.depth_settings = depth_settings
        self.quasistatic = quasistatic if quasistatic is not None else QuasistaticSettings()
        self.ekf: ErrorStateEKF | None = None
        self.sparse_depth = SparseDepthModality(scene, sparse_depth if sparse_depth is not None
                                                else SparseDepthSettings())
        self.contacts = ContactModality(scene, settings)
        self._region_settings = region if region is not None else RegionSettings()
        self._region: RegionModality | None = None  # built on first use (viewpoint model)
        self._texture_settings = texture if texture is not None else TextureSettings()
        self._texture: TextureModality | None = None  # built on first use (surface candidates)
        self._initial_variances: torch.Tensor | None = None
        self._frames = 0  # updates since the last initialisation
        self._process_noise: dict[tuple[float, float], torch.Tensor] = {}  # (std_t, std_r) -> Q (predict)
        self._settled = 0  # converged updates since the last initialisation
        self._carried = False  # whether the contacts carried the last prediction (their rigid motion accepted)
        #: what the last iterated update did (iterations, convergence, each block's noise)
        self.last_update: UpdateDiagnostics | None = None

    @property
    def region(self) -> RegionModality:
        """The region modality (its viewpoint model is loaded or built on first use)."""
        if self._region is None:
            self._region = RegionModality(self.scene, self._region_settings,
                                          (self.sparse_depth.unseen, self.sparse_depth.radius))
        return self._region

    @property
    def texture(self) -> TextureModality:
        """The photometric modality (its surface candidates are sampled on first use)."""
        if self._texture is None:
            self._texture = TextureModality(self.scene, self._texture_settings,
                                            (self.sparse_depth.unseen, self.sparse_depth.radius))
        return self._texture

    # ------------------------------------------------------------------------------------------ state
    def initialize(self, object2camera: torch.Tensor, std_translation: float | None = None,
                   std_rotation: float | None = None) -> None:
        """Start from ``object2camera (4, 4)`` with the initial standard deviations of the settings."""
        s = self.settings
        st = s.initial_std_translation if std_translation is None else std_translation
        sr = s.initial_std_rotation if std_rotation is None else std_rotation
        P = torch.diag(torch.tensor([st * st] * 3 + [sr * sr] * 3, dtype=_F64))
        state = PoseState.from_pose(object2camera.detach().to("cpu", _F64))
        self.ekf = ErrorStateEKF(state, P, EKFSettings(jacobian_mode="forward"))
        self._initial_variances = P.diagonal().clone()
        self._settled = 0
        self._frames = 0
        self._carried = False
        if self._region is not None:
            self._region.reset()
        if self._texture is not None:
            self._texture.reset()

    def _settle(self, settings: FilterSettings | None = None) -> None:
        """After a (re)initialisation the first converged updates may still sit in a wrong basin: the k-th one's
        variances stay at least the initial ones times ``settle_factor^k`` (of the frame's ``settings``, default
        the filter's: colour-only frames have their own), within the ``settle_frames`` frames after it (colour-only
        updates seldom converge: a first convergence 17 frames in raised the covariance back to the start's, and the
        box of ``block_lift_wrist`` turned 12 deg at once)."""
        if self._frames > self.settings.settle_frames:
            return
        settle_factor = (settings if settings is not None else self.settings).settle_factor
        factor = settle_factor ** self._settled
        self._settled += 1
        if settle_factor <= 0 or factor <= 1e-12 or self._initial_variances is None:
            return
        P = self.ekf.covariance
        raise_by = (factor * self._initial_variances - P.diagonal()).clamp_min(0)
        if bool((raise_by > 0).any()):
            self.ekf.covariance = P + torch.diag(raise_by)

    @property
    def pose(self) -> torch.Tensor:
        """``(4, 4)`` float64 current estimate."""
        return self.ekf.pose

    @property
    def covariance(self) -> torch.Tensor:
        """``(6, 6)`` float64 tangent covariance (ROS PoseWithCovariance order)."""
        return self.ekf.pose_covariance

    def set_pose(self, object2camera: torch.Tensor, covariance: torch.Tensor | None = None) -> None:
        """Overwrite the estimate (e.g. after refinement), keeping or replacing the covariance."""
        P = self.ekf.covariance if covariance is None else covariance.to(_F64)
        self.ekf = ErrorStateEKF(PoseState.from_pose(object2camera.detach().to("cpu", _F64)), P, self.ekf.settings)

    def inflate(self, factor: float) -> None:
        """Multiply the covariance by ``factor`` (loss of track; a keyframe of the camera image is dropped)."""
        self.ekf.covariance = self.ekf.covariance * factor
        if self._texture is not None and self._texture.keyframe is not None \
                and self._texture.keyframe.source == "image":
            self._texture.reset()

    # ---------------------------------------------------------------------------------------- predict
    def settings_for(self, has_depth: bool, settling: bool = False) -> FilterSettings:
        """The settings of a frame with or without depth (:meth:`.settings.FilterSettings.for_frame`), while
        settling after a (re)initialisation (:meth:`.settings.FilterSettings.settling`) or not."""
        if not has_depth:
            return self.settings.for_frame(False)
        return self.settings.settling() if settling else self.settings

    def predict(self, hand: PosedHand, ctx: TemporalContext, has_depth: bool = True) -> bool:
        """Quasistatic prediction from the contacts of t-1 (process noise of a frame with or without depth);
        returns whether contacts drove it."""
        s = self.settings_for(has_depth)
        motion = np.eye(4)
        valid = False
        if s.motion_model == "quasistatic" and ctx.contact_weights is not None \
                and ctx.previous_contact_points is not None:
            # one contact set, a few hundred points: float64 numpy on the CPU (contact_motion's values); only the
            # candidates in contact (positive weight: a few dozen) enter the sums, as they alone do in them
            w = ctx.contact_weights[0].detach().cpu().numpy()
            active = np.flatnonzero(w)
            prev, cur = (a[0].detach().cpu().numpy()[active].astype(np.float64) for a in
                         (ctx.previous_contact_points, hand.contact_points))
            w = w[active].astype(np.float64)
            m, valid = contact_motion_array(prev, cur, w, self.quasistatic)
            if valid:
                # contacts that do not move rigidly (a finger closing on the object, fingers rolling it against a
                # fixed palm, points near the surface that are not touching it) are no evidence of the object's
                # motion: accept the contact motion only where it explains the contacts' displacement
                misfit, displacement = contact_motion_fit_array(prev, cur, w, m)
                valid = misfit <= s.rigid_contact_tolerance + s.rigid_contact_ratio * displacement
            if valid:
                motion = m
        std_t, std_r = (s.process_std_translation, s.process_std_rotation) if valid else \
            (s.free_std_translation, s.free_std_rotation)
        Q = self._process_noise.get((std_t, std_r))
        if Q is None:  # one tensor per noise level (the EKF checks a process noise once per tensor)
            Q = self._process_noise[(std_t, std_r)] = torch.diag(torch.tensor([std_t ** 2] * 3 + [std_r ** 2] * 3,
                                                                              dtype=_F64))
        self.ekf.predict_motion(torch.from_numpy(motion), Q)
        self._carried = valid
        return valid

    # ----------------------------------------------------------------------------------------- update
    def update(self, obs: Observation, ctx: TemporalContext) -> dict[str, StepResult]:
        """Apply the configured observations in order; returns each one's :class:`StepResult`."""
        results: dict[str, StepResult] = {}
        self.last_update = None
        settings = self.settings_for(obs.frame.depth is not None, self._frames < self.settings.settle_frames)
        self._frames += 1
        gate = None if settings.gate_probability >= 1 else settings.gate_probability
        for name in settings.observations:
            if name in ITERATED_OBSERVATIONS:
                if name == next(n for n in settings.observations if n in ITERATED_OBSERVATIONS):
                    results.update(self._update_iterated(obs, ctx, gate, settings))
                continue
            if name == "fingertips":
                res = self._update_fingertips(obs, ctx, gate)
            elif name == "depth":
                res = self._update_depth(obs, gate)
            elif name == "silhouette":
                res = self._update_silhouette(obs, gate)
            elif name == "centre":
                res = self._update_centre(obs, gate)
            else:  # pragma: no cover - settings validate the names
                continue
            if res is not None:
                results[name] = res
        return results

    def _update_iterated(self, obs: Observation, ctx: TemporalContext, gate,
                         settings: FilterSettings) -> dict[str, StepResult]:
        """The ``(r, J, w)`` observations together, by the iterated update (:mod:`.iterated_update`)."""
        names = [n for n in settings.observations if n in ITERATED_OBSERVATIONS]
        pose = self.ekf.pose
        modalities = []
        use_depth = "sparse_depth" in names and obs.frame.depth is not None
        weak = "texture" in names and self._texture_where_weak(obs)
        use_texture = weak or ("texture" in names and self.texture.joins(obs.frame.depth is not None))
        occlusion = HandOcclusion(self.scene, obs) if (use_depth or use_texture or "region" in names) else None
        if use_depth and self.sparse_depth.begin(obs, pose, occlusion):
            modalities.append(self.sparse_depth)
        if use_texture and self.texture.begin(obs, pose, occlusion, obs.frame.depth is not None, weak):
            modalities.append(self.texture)
        if "region" in names and self.region.begin(obs, pose, occlusion, self._contour_uncertainty(obs),
                                                   search=settings.start_search, prior_covariance=self.ekf.covariance):
            modalities.append(self.region)
        std = settings.carried_fingertip_std if self._carried else settings.contact_std
        if "contacts" in names and self.contacts.begin(obs, ctx, pose, std):
            modalities.append(self.contacts)
        if not modalities:
            return {}
        s = settings
        options = CovarianceOptions(s.max_iterations, (s.converged_translation, s.converged_rotation),
                                    s.noise_estimation, s.keep_prior_unconverged, s.cycle_factor)
        self.last_update = UpdateDiagnostics()
        results = iterated_update(self.ekf, modalities, s.iterations, gate, options=options,
                                  diagnostics=self.last_update)
        trusted = self.last_update.converged and any(r.accepted for r in results.values())
        if trusted:
            self._settle(settings)
        if use_texture:
            self._texture_keyframe(obs, occlusion, trusted, self.texture in modalities, settings,
                                   any(r.accepted for r in results.values()))
        if "region" in names:
            self.region.learn(obs, self.ekf.pose, occlusion)
        return results

    def _texture_where_weak(self, obs: Observation) -> bool:
        """A frame without depth after one whose contour left pose directions to the prior (``region.weak_gain``): the
        texture observes them (``region.texture_where_weak``)."""
        return obs.frame.depth is None and self._region_settings.texture_where_weak and self._region is not None \
            and self._region.left_to_prior

    def _texture_keyframe(self, obs: Observation, occlusion: HandOcclusion | None, trusted: bool,
                          used: bool, settings: FilterSettings, accepted: bool) -> None:
        """A new texture keyframe at the updated pose when there is none or the last one is worn out (its points
        no longer visible or agreeing, the object turned too far): a ``model`` keyframe after any converged update
        (its intensities come from the object's texture, not from this frame; with ``settings`` that trust an
        unconverged update, ``keep_prior_unconverged`` off as on colour-only frames, after any accepted one: those
        seldom converge, and the first keyframe came 42 frames into a bottle's start while the outline let its
        distance drift), an ``image`` one only on a trusted frame after the settling frames."""
        texture = self.texture
        source = "model" if self._texture_settings.reference == "model" and texture.has_model_texture else "image"
        if source == "model" and accepted and not settings.keep_prior_unconverged:
            trusted = True
        if not trusted or (source == "image" and self._frames <= self.settings.settle_frames):
            return
        pose = self.ekf.pose
        due = texture.keyframe is None or (used and texture.keyframe_due()) \
            or texture.turned_since_keyframe(pose) > self._texture_settings.max_rotation
        if due:
            texture.take_keyframe(obs, pose, occlusion, source, obs.frame.depth is not None)

    def _contour_uncertainty(self, obs: Observation) -> float:
        """How far [px] the object's contour may lie from its projection at the estimate: the largest translation
        standard deviation, projected at the object's distance."""
        sd = float(self.ekf.covariance.diagonal()[:3].max().sqrt())
        return float(obs.camera.fx) * sd / max(float(self.ekf.pose[2, 3]), 1e-3)

    def step(self, obs: Observation, ctx: TemporalContext) -> FilterStep:
        """Predict with the hand motion, then update with the observations of ``obs``."""
        used = self.predict(obs.hand, ctx, obs.frame.depth is not None)
        return FilterStep(used, self.update(obs, ctx))

    def _query(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distance ``(N,)`` [m] and outward normal ``(N, 3)`` of camera-frame ``points (N, 3)`` at the
        current pose (float64, CPU, no gradient)."""
        with torch.no_grad():
            sd = self.scene.object_sdf.signed_distance(points[None].to(self.scene.device, torch.float32),
                                                       self.ekf.pose[None].to(self.scene.device, torch.float32))
        return sd.distance[0].double().cpu(), sd.normal[0].double().cpu()

    def _sdf_model(self, points: torch.Tensor, d0: torch.Tensor, n_cam: torch.Tensor):
        """Signed distance ``(N,)`` [m] of ``points (N, 3)`` around the current pose and its Jacobian ``(N, 6)``.

        First-order model ``d0 + n_obj . (p_obj(pose) - p_obj(x))``, exact to first order (the SDF gradient is
        the outward normal), written in torch and differentiated over the tangent by reverse-mode autodiff
        (:func:`~.linearization.linearize_rowwise`: each point depends on the pose alone).
        """
        pose = self.ekf.pose
        R0, t0 = pose[:3, :3], pose[:3, 3]
        p = points.double().cpu()
        p_obj0 = (p - t0) @ R0
        n_obj = n_cam @ R0

        def fn(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (N, 3, 3), (N, 3) -> (N,)
            p_obj = torch.einsum("ni,nij->nj", p - t, R)
            return d0 + ((p_obj - p_obj0) * n_obj).sum(-1)

        return linearize_rowwise(fn, self.ekf.state, p.shape[0])

    def _update_fingertips(self, obs: Observation, ctx: TemporalContext, gate) -> StepResult | None:
        if ctx.tips_in_contact is None or not bool(ctx.tips_in_contact.any()):
            return None
        tips = obs.hand.fingertip_centres[0][ctx.tips_in_contact.to(obs.hand.fingertip_centres.device)]
        d0, normals = self._query(tips)
        radius = self.scene.fingertip_radius
        # a finger that let go (its tip now far from the predicted surface) is no observation of the object
        near = (d0 - radius).abs() < 2 * self.settings.contact_distance
        if not bool(near.any()):
            return None
        d, J = self._sdf_model(tips[near.to(tips.device)], d0[near], normals[near])
        count = int(near.sum())
        var = torch.full((count,), self.settings.fingertip_std ** 2, dtype=_F64)
        h = d - radius  # z = 0: the tip sphere touches the surface
        return self.ekf.update(torch.zeros(count, dtype=_F64), lambda s: h, var, jacobian=J, gate_probability=gate)

    def _update_depth(self, obs: Observation, gate) -> StepResult | None:
        if obs.depth_points is None:
            return None
        points = obs.depth_points[0]
        d0, normals = self._query(points)
        # association: depth points near the predicted surface are object surface (as associate_depth_points)
        keep = d0.abs() < self.depth_settings.association_distance
        if int(keep.sum()) < 10:
            return None
        d, J = self._sdf_model(points[keep.to(points.device)], d0[keep], normals[keep])
        r = -d  # z = 0 (on the surface)
        c = self.depth_settings.robust_scale
        w = 1.0 / (1.0 + (r / c) ** 2)  # Cauchy IRLS weights
        var = self.settings.depth_std ** 2
        Lam = (J * w[:, None]).transpose(0, 1) @ J / var
        eta = (J * w[:, None]).transpose(0, 1) @ r / var
        return self.ekf.update_information(Lam, eta, gate_probability=gate)

    def _perturbed_renders(self, obs: Observation, depth: bool = False):
        """Renders at the estimate and at the 12 central-difference perturbations of it.

        Returns the visible object silhouettes ``(13, S, S)``, the soft depth ``(13, S, S)`` [m] (None unless
        ``depth``) and the perturbation steps ``(6,)``; index 0 is the estimate, 1-6 the + steps, 7-12 the - steps.
        """
        state = self.ekf.state
        deltas = _perturbations(state.pose.device)
        poses = torch.stack([state.pose] + [retract(state, d).pose for d in deltas], 0)
        with torch.no_grad():
            out = render_scene(self.scene, poses.to(self.scene.device, torch.float32), obs, sigma=1.0,
                               gamma=self.scene.renderer.settings.shading.gamma, depth=depth, colour=False)
        vis = out.visible[:, OBJECT].double().cpu()
        soft_depth = out.depth.double().cpu() if depth and out.depth is not None else None
        return vis, soft_depth, deltas[:6].diagonal()

    @staticmethod
    def _central_difference(values: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Jacobian ``(k, 6)`` from values ``(13, k)`` at the estimate, + steps and - steps."""
        return ((values[1:7] - values[7:]) / (2 * steps[:, None])).transpose(0, 1)

    def _update_silhouette(self, obs: Observation, gate) -> StepResult | None:
        if obs.mask is None:
            return None
        vis, _, steps = self._perturbed_renders(obs)
        J = self._central_difference(vis.reshape(13, -1), steps)
        r = (obs.mask[0].double().cpu() - vis[0]).reshape(-1)
        var = self.settings.silhouette_std ** 2
        Lam = J.transpose(0, 1) @ J / var
        eta = J.transpose(0, 1) @ r / var
        # the full innovation test: a mask that disagrees everywhere (wrong object, failed segmentation) is
        # refused even where the disagreement would not move the pose
        return self.ekf.update_information(Lam, eta, residual_sq=float((r * r).sum() / var),
                                           num_observations=r.numel(), gate="full", gate_probability=gate)

    def _update_centre(self, obs: Observation, gate) -> StepResult | None:
        """Object centre: the observed mask's centroid [ROI px] (and, with depth, the mean depth of the masked
        pixels [m]) against the same statistics of the rendered visible silhouette (O_object of Table I)."""
        if obs.mask is None or float(obs.mask.sum()) < 4:
            return None
        m = obs.mask[0].double().cpu()
        observed_depth = obs.depth[0].double().cpu() if obs.depth is not None else None
        use_depth = observed_depth is not None and float((m * (observed_depth > 0)).sum()) >= 4
        vis, soft_depth, steps = self._perturbed_renders(obs, depth=use_depth)
        S = obs.roi_camera.width
        ys, xs = torch.meshgrid(torch.arange(S, dtype=_F64), torch.arange(S, dtype=_F64), indexing="ij")
        coords = torch.stack((xs.reshape(-1), ys.reshape(-1)), -1)  # (S*S, 2)
        w = vis.reshape(13, -1)
        if float(w[0].sum()) < 4:
            return None
        stats = [(w @ coords) / w.sum(-1, keepdim=True)]  # (13, 2) rendered visible centroid
        z = [(m.reshape(-1) @ coords) / m.sum()]
        px_scale = (obs.box[2] - obs.box[0]) / S  # ROI px -> image px
        variances = [(self.settings.centre_std_px / px_scale) ** 2] * 2
        if use_depth:
            valid = (observed_depth > 0).reshape(-1).double()
            # interior pixels of the estimate's silhouette (soft depth at the blurred edges mixes in background)
            wd = (w[0] > 0.9).double() * valid
            if float(wd.sum()) < 4:
                wd = w[0] * valid
            stats.append(((wd * soft_depth.reshape(13, -1)).sum(-1) / wd.sum().clamp_min(1e-9))[:, None])
            # the same pixels on both sides: the mean observed depth where the estimate sees its object
            z.append(((wd * observed_depth.reshape(-1)).sum() / wd.sum().clamp_min(1e-9))[None])
            variances.append(self.settings.centre_std_depth ** 2)
        h = torch.cat(stats, -1)  # (13, k)
        H = self._central_difference(h, steps)
        h0 = h[0]
        return self.ekf.update(torch.cat(z), lambda s: h0, torch.tensor(variances, dtype=_F64), jacobian=H,
                               gate_probability=gate)
