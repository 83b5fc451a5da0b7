"""The object tracker: bodies + modalities + filter (+ refiner), one :class:`Estimate` per frame.

One frame's way (paper Fig. 2-3)::

    hand at t (joint angles, hand2camera)  ->  predict: quasistatic contact dynamics (Eq. 9)
    crop around the prediction             ->  update: fingertips / centre / silhouette / depth (EKF)
    mode "refine"                          ->  Adam over all loss terms, time-budgeted (Sec. III-D)
    quality score                          ->  status tracking / lost; contacts for the next frame

The tracker never reads ground truth. Masks come from the frame (an external segmenter) or from a mask source
(``segment(frame, object2camera_pred, hand) -> (H, W)`` or None); without masks the silhouette terms are
skipped and depth and physics carry the estimate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch

from ..errors import InvalidValueError
from ..geometry.camera import MIN_DEPTH
from ..geometry.transforms import invert_transform, transform_points, transform_points_array
from ..io.frame import Frame
from ..models.rigid_object import RigidObject
from ..physics.contact import contact_value, contact_value_array
from ..physics.settings import PhysicsSettings
from ..render.settings import RenderSettings
from .calibration import HandCalibrator
from .filter import ObjectPoseFilter, contact_context
from .initialization import GlobalPoseSearch, InitializationSettings, SearchResult, automatic_mask
from .modalities import TemporalContext
from .observation import Observation, prepare_observation
from .recovery import TrackingMonitor, reinitialize
from .refiner import PoseRefiner, RefineResult
from .scene import HandObjectScene, PosedHand
from .settings import TrackerSettings

__all__ = ["Estimate", "MaskSource", "ObjectTracker", "TrackStatus"]

TrackStatus = Literal["initialising", "tracking", "lost"]


class MaskSource(Protocol):
    """Anything that segments the object: ``(frame, object2camera_pred (4, 4), hand) -> (H, W) in [0, 1]``."""

    def __call__(self, frame: Frame, object2camera_pred: torch.Tensor, hand: PosedHand) -> torch.Tensor | None:
        ...


@dataclass
class Estimate:
    """The tracker's output for one frame (CPU tensors).

    Attributes:
        index, stamp: of the frame.
        object2camera: ``(4, 4)`` float64 pose of the object in the camera optical frame [m].
        covariance: ``(6, 6)`` float64, ROS PoseWithCovariance order (x, y, z, rot x, rot y, rot z) [m^2, rad^2].
        quality: tracking-quality score in [0, 1] (silhouette IoU and depth agreement).
        status: ``"initialising"``, ``"tracking"`` or ``"lost"``.
        contact_points: ``(C, 3)`` hand points in contact [m, camera frame]; contact_values: ``(C,)`` in [0, 1]
            (``min(1 / s_mm, 1)``); contact_normals: ``(C, 3)`` outward object normals at them.
        timings: seconds spent per stage; refine: the refiner's result in ``"refine"`` mode.
        updates: status of each filter update (``"accepted"``, ``"gated"``, ...).
        reason: the loss-of-track monitor's explanation of ``status``; mask_status: the mask source's status.
    """

    index: int
    stamp: float
    object2camera: torch.Tensor
    covariance: torch.Tensor
    quality: float
    status: TrackStatus
    contact_points: torch.Tensor
    contact_values: torch.Tensor
    contact_normals: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)
    refine: RefineResult | None = None
    updates: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    mask_status: str = ""


class ObjectTracker:
    """Tracks one rigid object manipulated by a known hand.

    Args:
        hand: hand model (``URDFHand`` or MANO layer) whose joint order matches ``Frame.joint_angles``.
        obj: the object model.
        settings: tracker settings (``config/allegro_tracking.yaml``).
        mask_source: optional segmenter (``handypriors_core.segmentation``); frames' own ``object_mask`` is used
            when it is None.
        render_settings, physics_settings: component settings (defaults if None).
        initialization: settings of the global pose search (initial pose, re-initialisation after loss of track).
    """

    def __init__(self, hand, obj: RigidObject, settings: TrackerSettings | None = None,
                 mask_source: MaskSource | None = None, render_settings: RenderSettings | None = None,
                 physics_settings: PhysicsSettings | None = None,
                 initialization: InitializationSettings | None = None) -> None:
        self.settings = settings if settings is not None else TrackerSettings()
        physics = physics_settings if physics_settings is not None else PhysicsSettings()
        self.scene = HandObjectScene(hand, obj, self.settings.device, render_settings, physics.contact)
        self.filter = ObjectPoseFilter(self.scene, self.settings.filter, self.settings.depth, physics.quasistatic,
                                     self.settings.sparse_depth, self.settings.region, self.settings.texture)
        self.refiner = PoseRefiner(self.scene, self.settings.refine, self.settings.weights, self.settings.depth,
                                   self.settings.sparse_depth)
        self.search = GlobalPoseSearch(self.scene, initialization, self.settings.weights)
        self.monitor = TrackingMonitor(self.settings.recovery)
        self.mask_source = mask_source
        self.calibration: HandCalibrator | None = None  # hand-camera correction + joint offsets (issue 18)
        if self.settings.calibration.enabled:
            self.set_calibration(None)
        self.reset()

    def set_calibration(self, calibration=None) -> HandCalibrator:
        """Correct the hand state of every frame with a :class:`~..io.calibration_file.HandCalibration` (None:
        none yet); estimated online from the hand's depth when ``settings.calibration.enabled``."""
        if not hasattr(self.scene.hand, "point_jacobian"):
            raise InvalidValueError("hand calibration needs a URDF hand model (joint offsets, forward kinematics)")
        if self.calibration is None:
            self.calibration = HandCalibrator(self.scene.hand, self.settings.calibration, self.scene.renderer)
        self.calibration.reset(calibration)
        return self.calibration

    # ---------------------------------------------------------------------------------------------- state
    @property
    def status(self) -> TrackStatus:
        """``"initialising"``, ``"tracking"`` or ``"lost"`` (the loss-of-track monitor's state)."""
        return self.monitor.status

    def reset(self, object2camera: torch.Tensor | None = None) -> None:
        """Forget the track; start again from ``object2camera (4, 4)`` if given (else wait for one)."""
        self.context = TemporalContext()
        self._poses: list[torch.Tensor] = []
        self.initialized = False
        self.monitor.reset()
        if hasattr(self.mask_source, "reset"):
            self.mask_source.reset()
        if object2camera is not None:
            self.initialize(object2camera)

    def initialize(self, object2camera: torch.Tensor) -> None:
        """Set the initial pose (from a parameter, a topic, a file or the global search)."""
        pose = torch.as_tensor(object2camera, dtype=torch.float64)
        if pose.shape != (4, 4) or not bool(torch.isfinite(pose).all()):
            raise InvalidValueError(f"initial object2camera must be a finite (4, 4) matrix; got shape "
                                    f"{tuple(pose.shape)}")
        self.filter.initialize(pose)
        self.context = TemporalContext()
        self._poses = []
        self.initialized = True
        self.monitor.reset()

    def initialize_from_frame(self, frame: Frame) -> SearchResult:
        """Find the initial pose automatically: the global search on ``frame`` (issue: no initial pose given).

        The mask comes from the frame, a pose-free mask source, the depth around the hand or the colour model
        (:func:`~.initialization.automatic_mask`). On success the tracker is initialised with the result.
        """
        if self.calibration is not None:
            frame = self.calibration.correct(frame)
        hand = self.scene.pose_hand(frame.joint_angles, frame.hand2camera)
        mask, origin = automatic_mask(self.scene, frame, hand, self.mask_source)
        result = self.search.search(frame, mask, hand)
        result.status = f"{result.status} (mask: {origin})"
        if result.ok:
            self.initialize(result.object2camera)
        return result

    # ---------------------------------------------------------------------------------------------- track
    def track(self, frame: Frame) -> Estimate:
        """Estimate the object pose in ``frame``."""
        if not self.initialized:
            raise InvalidValueError("the tracker has no initial pose: call initialize(object2camera) first")
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        if self.calibration is not None:  # the corrected hand state feeds everything below
            frame = self.calibration.observe(frame)
            timings["calibration"] = time.perf_counter() - t0
        hand = self.scene.pose_hand(frame.joint_angles, frame.hand2camera)
        used_contacts = self.filter.predict(hand, self.context, frame.depth is not None)
        timings["predict"] = time.perf_counter() - t0
        predicted = self.filter.pose.float()
        mask = None
        if self.mask_source is not None:
            t = time.perf_counter()
            mask = self.mask_source(frame, predicted, hand)
            timings["segment"] = time.perf_counter() - t
        t = time.perf_counter()
        obs = prepare_observation(frame, self.scene, predicted, self.settings.roi, self.settings.depth,
                                  object_mask=mask, hand=hand, depth_points=self._needs_depth_points())
        timings["prepare"] = time.perf_counter() - t
        t = time.perf_counter()
        updates = self.filter.update(obs, self.context)
        timings["update"] = time.perf_counter() - t
        refine = None
        if self.settings.mode == "refine":
            t = time.perf_counter()
            converged = self.filter.last_update is not None and self.filter.last_update.converged \
                and any(u.accepted for u in updates.values())
            steps = self.settings.refine.converged_iterations if converged else None
            refine = self.refiner.refine(self.filter.pose.float(), obs, self.context, iterations=steps) \
                if steps != 0 else RefineResult.unchanged(self.filter.pose.float(), "filter_converged")
            if refine.iterations > 0 and torch.isfinite(refine.object2camera).all():
                self.filter.set_pose(refine.object2camera.double().cpu())
            timings["refine"] = time.perf_counter() - t
        pose = self.filter.pose.clone()
        t = time.perf_counter()
        quality = self.quality(obs, pose)
        mask_status = "ok" if mask is not None else getattr(self.mask_source, "status", "no mask source")
        seen = obs.mask is not None or obs.frame.depth is not None or \
            ("region" in updates and updates["region"].accepted)
        observation = "ok" if seen else f"no mask and no depth ({mask_status})"
        nis = [u.nis / u.dof for u in updates.values() if u.dof > 0 and math.isfinite(u.nis)]
        decision = self.monitor.observe(quality, pose, innovation=max(nis) if nis else None, observation=observation)
        if decision.inflate > 1:
            self.filter.inflate(decision.inflate)
        if decision.reinitialize:
            t_search = time.perf_counter()
            result, accepted = reinitialize(self.search, frame, hand, decision, self.monitor, self.mask_source)
            timings["reinitialize"] = time.perf_counter() - t_search
            if accepted:
                self.filter.initialize(result.object2camera)
                self.context = TemporalContext()
                self._poses = []
                pose = self.filter.pose.clone()
        elif decision.learn and hasattr(self.mask_source, "update"):
            self.mask_source.update(frame, pose.float(), hand)
        if hasattr(self.mask_source, "learning"):
            self.mask_source.learning = self.monitor.status != "lost"
        self._poses = (self._poses + [pose.float().to(self.scene.device)])[-2:]
        self.context = contact_context(self.scene, hand, pose, self.settings.filter.contact_distance, self._poses,
                                       frame.joint_angles)
        points, values, normals = self._contacts(self.context)
        timings["quality_contacts"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        if not used_contacts:
            timings["no_contact_prediction"] = 1.0
        return Estimate(index=frame.index, stamp=frame.stamp, object2camera=pose, covariance=self.filter.covariance
                        .clone(), quality=quality, status=self.status, contact_points=points, contact_values=values,
                        contact_normals=normals, timings=timings, refine=refine,
                        updates={k: v.status for k, v in updates.items()}, reason=self.monitor.reason,
                        mask_status=mask_status)

    # --------------------------------------------------------------------------------------------- helpers
    def _needs_depth_points(self) -> bool:
        """Whether a configured term uses the back-projected depth points (the dense filter depth)."""
        return "depth" in self.settings.filter.observations

    def quality(self, obs: Observation, object2camera: torch.Tensor, arrays: bool = True) -> float:
        """Score in [0, 1] of how well the pose explains the frame, from the object's surface samples.

        The samples facing the camera are projected into the full image. With depth, a sample counts as
        *occluded* where the observed surface lies more than 1 cm in front of it (the fingers), as *agreeing*
        where the observed depth is within 1 cm of it, and as *disagreeing* otherwise (background or nothing
        behind it); depth agreement = agreeing / (agreeing + disagreeing). With a mask, the mean mask value at the
        non-occluded samples. The score is the mean of the available cues; 1.0 when neither exists (nothing
        contradicts the pose) and 0.0 when the object projects outside the image. No rendering: it costs about
        a millisecond, so it can run on every frame.
        """
        device = self.scene.device
        if arrays and device.type == "cpu":  # numpy (unless ``arrays`` is False): the same arithmetic and score
            pose = object2camera.detach().to(device, torch.float32).numpy()
            return _quality_arrays(obs, transform_points_array(pose, self.scene.object_samples.numpy()),
                                   transform_points_array(pose, self.scene.object_sample_normals.numpy(), False))
        with torch.no_grad():
            pose = object2camera.to(device, torch.float32)
            R, t = pose[:3, :3], pose[:3, 3]
            points = self.scene.object_samples @ R.T + t  # (S, 3) camera frame
            normals = self.scene.object_sample_normals @ R.T
            facing = (normals * points).sum(-1) < 0
            uv = obs.camera.project(points[None])[0].round().long()
            W, H = obs.camera.width, obs.camera.height
            inside = facing & (points[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
            if int(inside.sum()) < 5:
                return 0.0
            u, v, z = uv[inside, 0], uv[inside, 1], points[inside, 2]
            visible = torch.ones_like(z, dtype=torch.bool)
            scores = []
            if obs.frame.depth is not None:
                observed = obs.frame.depth.to(device)[v, u]
                valid = torch.isfinite(observed)
                occluded = valid & (observed < z - 0.01)
                agree = valid & ((observed - z).abs() <= 0.01)
                judged = int((valid & ~occluded).sum())
                if judged >= 5:
                    scores.append(float(agree.sum()) / judged)
                visible = ~occluded
            if obs.mask_full is not None and int(visible.sum()) >= 5:
                scores.append(float(obs.mask_full[v[visible], u[visible]].mean()))
            if not scores:
                return 1.0
        return float(sum(scores) / len(scores))

    def _contacts(self, ctx: TemporalContext):
        """Hand contact candidates near the object (from the frame's contact bookkeeping), their contact values
        and the object normals there."""
        d = ctx.previous_contact_distances[0]
        if d.device.type == "cpu" and d.dtype == torch.float32:  # numpy: contact_value's float32 operations
            near = np.flatnonzero(d.numpy() < self.settings.filter.contact_distance)
            return (torch.from_numpy(ctx.previous_contact_points[0].numpy()[near]),
                    torch.from_numpy(contact_value_array(d.numpy()[near])),
                    torch.from_numpy(ctx.previous_contact_normals[0].numpy()[near]))
        near = d < self.settings.filter.contact_distance
        return (ctx.previous_contact_points[0][near].cpu(), contact_value(d[near]).cpu(),
                ctx.previous_contact_normals[0][near].cpu())

    def object_points_camera(self, object2camera: torch.Tensor) -> torch.Tensor:
        """The object's surface samples ``(S, 3)`` in the camera frame for a pose (for overlays)."""
        return transform_points(object2camera[None].float().to(self.scene.device),
                                self.scene.object_samples[None])[0].cpu()

    def object_in_hand(self, object2camera: torch.Tensor, hand2camera: torch.Tensor) -> torch.Tensor:
        """``object2hand (4, 4)`` for a pose and the hand pose."""
        return invert_transform(hand2camera.double()) @ object2camera.double()


def _quality_arrays(obs: Observation, points: np.ndarray, normals: np.ndarray) -> float:
    """:meth:`ObjectTracker.quality` from the posed samples ``points``, ``normals (S, 3)`` float32 [m, camera frame]
    in numpy (the CPU path: a few hundred samples; the same float32 arithmetic and score)."""
    # per column (numpy is slow along a short last axis): the same products summed in the same order
    facing = normals[:, 0] * points[:, 0] + normals[:, 1] * points[:, 1] + normals[:, 2] * points[:, 2] < 0
    K = obs.camera.K.detach().to("cpu", torch.float32).numpy()
    z_safe = np.maximum(points[:, 2], np.float32(MIN_DEPTH))
    u = np.round(points[:, 0] / z_safe * K[0, 0] + K[0, 2]).astype(np.int64)  # camera.project, rounded
    v = np.round(points[:, 1] / z_safe * K[1, 1] + K[1, 2]).astype(np.int64)
    W, H = obs.camera.width, obs.camera.height
    inside = facing & (points[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    if int(inside.sum()) < 5:
        return 0.0
    u, v, z = u[inside], v[inside], points[inside, 2]
    visible = np.ones(z.shape, dtype=bool)
    scores = []
    if obs.frame.depth is not None:
        observed = obs.frame.depth.detach().cpu().numpy()[v, u]
        valid = np.isfinite(observed)
        occluded = valid & (observed < z - np.float32(0.01))
        agree = valid & (np.abs(observed - z) <= np.float32(0.01))
        judged = int((valid & ~occluded).sum())
        if judged >= 5:
            scores.append(int(agree.sum()) / judged)
        visible = ~occluded
    if obs.mask_full is not None and int(visible.sum()) >= 5:
        keep = torch.from_numpy(visible)
        scores.append(float(obs.mask_full[torch.from_numpy(v)[keep], torch.from_numpy(u)[keep]].mean()))
    if not scores:
        return 1.0
    return float(sum(scores) / len(scores))
