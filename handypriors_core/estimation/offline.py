"""Offline whole-sequence refinement (``handypriors track --mode offline``): sliding windows optimised jointly.

The forward pass is the online tracker in ``refine`` mode (EKF + per-frame Adam). Every frame's prepared
:class:`~.observation.Observation` (crops at the final estimate, the posed hand, the object mask used) is
cached together with the contact weights the tracker carried into that frame. Windows of ``window`` consecutive
frames are then optimised jointly with Adam over all loss terms of :class:`~.refiner.PoseRefiner`
(:meth:`~.refiner.PoseRefiner.losses` / :meth:`~.refiner.PoseRefiner.total`):

- the parameters are the pose corrections of every frame of the window (the refiner's parameterisation,
  ``R <- exp(phi) R0``, ``t <- t0 + rho``, scaled by the refiner's per-component step sizes);
- the temporal terms (``con`` Eq. 4, ``smo`` Eq. 5, ``sliding``) of frame ``t`` take the *current* poses of
  frames ``t-1`` and ``t-2`` from the window (the two frames before the window are fixed), so the gradient of
  each term reaches both neighbours: future frames pull on past ones and the other way round;
- the sliding term compares frame ``t``'s contact candidates with frame ``t-1``'s, both in the object frame
  of their own (variable) pose; which candidates were in contact comes from the forward pass.

One silhouette sharpness is used for every iteration (the forward pass starts close, so no coarse-to-fine
schedule is needed) so that the losses of all iterates are comparable. Windows overlap by ``overlap`` frames;
frames leave the buffer (final) once no later window contains them, so memory stays bounded for long recordings
and results stream out in order. The best iterate (lowest total
loss) of each window is kept, and a window whose loss or gradient becomes non-finite keeps its start poses.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from ..errors import InvalidValueError
from ..geometry.transforms import invert_transform, transform_points
from ..io.frame import Frame
from .adam_steps import AdamRun
from .modalities import TemporalContext
from .observation import Observation, prepare_observation
from .refiner import apply_pose_delta
from .tracker import Estimate, ObjectTracker

__all__ = ["OfflineRefiner", "OfflineSettings", "OfflineStats"]


@dataclass
class OfflineSettings:
    """Offline window refinement.

    Attributes:
        window: frames optimised jointly (default: the tracker's ``refine.window``).
        overlap: frames shared by consecutive windows (default: ``window // 2``, at most ``window - 1``).
        iterations: Adam steps per window (default: the tracker's ``refine.iterations``).
        step_scale: factor on the refiner's Adam step sizes (the forward pass already starts close: small steps).
        sigma: silhouette sharpness [px^2] used throughout (default: ``refine.sigma_end``). One value for every
            iteration keeps the losses of all iterates comparable, so the best one can be kept.
    """

    window: int | None = None
    overlap: int | None = None
    iterations: int | None = None
    step_scale: float = 0.5
    sigma: float | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise InvalidValueError(f"offline window must be >= 1 frame; got {self.window}")
        if self.overlap is not None and self.overlap < 0:
            raise InvalidValueError(f"offline overlap must be >= 0 frames; got {self.overlap}")
        if self.iterations is not None and self.iterations < 0:
            raise InvalidValueError(f"offline iterations must be >= 0; got {self.iterations}")
        if not (math.isfinite(self.step_scale) and self.step_scale > 0):
            raise InvalidValueError(f"offline step_scale must be > 0; got {self.step_scale}")
        if self.sigma is not None and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise InvalidValueError(f"offline sigma must be > 0 [px^2]; got {self.sigma}")


@dataclass
class OfflineStats:
    """What the offline pass did: windows optimised, Adam steps, loss before / after (sums over windows)."""

    windows: int = 0
    iterations: int = 0
    initial_loss: float = 0.0
    final_loss: float = 0.0
    elapsed: float = 0.0
    stopped: dict[str, int] = field(default_factory=dict)


@dataclass
class _Entry:
    estimate: Estimate
    obs: Observation
    contact_weights: torch.Tensor | None  # (1, C): candidates touching the object at t-1 (forward pass)
    pose: torch.Tensor  # (4, 4) float32, device: current value


class _MaskRecorder:
    """Wraps the tracker's mask source and keeps the last mask it returned (the offline pass reuses it)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.last: torch.Tensor | None = None

    def __call__(self, frame, object2camera_pred, hand):
        self.last = self.inner(frame, object2camera_pred, hand)
        return self.last

    def __getattr__(self, name):
        return getattr(self.inner, name)


class OfflineRefiner:
    """Runs the forward pass through ``tracker`` and refines sliding windows of frames jointly.

    Usage::

        offline = OfflineRefiner(tracker)              # tracker.settings.mode should be "refine"
        for frame in frames:
            for est in offline.track(frame):           # final estimates, in order (lagging by a window)
                ...
        for est in offline.finish():
            ...

    ``offline.forward`` holds the forward-pass (online refine) estimate of every frame index seen.
    """

    def __init__(self, tracker: ObjectTracker, settings: OfflineSettings | None = None) -> None:
        self.tracker = tracker
        s = settings if settings is not None else OfflineSettings()
        self.window = s.window if s.window is not None else tracker.settings.refine.window
        overlap = s.overlap if s.overlap is not None else self.window // 2
        self.overlap = max(0, min(overlap, self.window - 1))
        self.iterations = s.iterations if s.iterations is not None else tracker.settings.refine.iterations
        self.step_scale = s.step_scale
        self.sigma = s.sigma if s.sigma is not None else tracker.settings.refine.sigma_end
        self.stats = OfflineStats()
        self.forward: dict[int, Estimate] = {}
        self._pending: list[_Entry] = []
        self._before: list[_Entry] = []  # up to two final entries preceding the pending ones
        self._fresh = 0  # pending entries not yet optimised in any window
        if tracker.mask_source is not None and not isinstance(tracker.mask_source, _MaskRecorder):
            tracker.mask_source = _MaskRecorder(tracker.mask_source)

    # ------------------------------------------------------------------------------------------ stream
    def track(self, frame: Frame) -> list[Estimate]:
        """Forward-track ``frame``; returns the estimates that became final (possibly none)."""
        tracker = self.tracker
        ctx = tracker.context
        weights = ctx.contact_weights.detach().clone() if ctx.contact_weights is not None else None
        est = tracker.track(frame)
        self.forward[est.index] = est
        mask = tracker.mask_source.last if isinstance(tracker.mask_source, _MaskRecorder) else None
        scene = tracker.scene
        obs = prepare_observation(frame, scene, est.object2camera.float(), tracker.settings.roi,
                                  tracker.settings.depth, object_mask=mask)
        # only the window's frames are held (entries are released once final), so memory stays bounded
        self._pending.append(_Entry(est, obs, weights, est.object2camera.to(scene.device, torch.float32)))
        self._fresh += 1
        if len(self._pending) >= self.window:
            return self._step()
        return []

    def finish(self, optimize: bool = True) -> list[Estimate]:
        """Optimise what is left (unless ``optimize`` is False, e.g. after Ctrl-C) and return every final estimate."""
        out: list[Estimate] = []
        if optimize and self._pending and self._fresh > 0:
            self._optimize(self._pending[-self.window:] if len(self._pending) > self.window else self._pending)
        for entry in self._pending:
            out.append(self._final(entry))
        self._pending, self._fresh = [], 0
        return out

    def _step(self) -> list[Estimate]:
        self._optimize(self._pending[: self.window])
        done = self._pending[: self.window - self.overlap]
        self._pending = self._pending[self.window - self.overlap:]
        self._fresh = 0
        out = [self._final(e) for e in done]
        self._before = (self._before + done)[-2:]
        return out

    def _final(self, entry: _Entry) -> Estimate:
        est = entry.estimate
        pose = entry.pose.detach().double().cpu()
        if torch.equal(pose, est.object2camera.double()):
            return est
        quality = self.tracker.quality(entry.obs, pose)
        return dataclasses.replace(est, object2camera=pose, quality=quality,
                                   timings={**est.timings, "offline": 1.0})

    # ------------------------------------------------------------------------------------------ windows
    def _optimize(self, entries: list[_Entry]) -> None:
        if self.iterations <= 0 or not entries:
            return
        refiner = self.tracker.refiner
        s = refiner.settings
        device = self.tracker.scene.device
        start = time.perf_counter()
        W = len(entries)
        pose0 = torch.stack([e.pose.detach() for e in entries])  # (W, 4, 4)
        delta = torch.zeros(W, 6, device=device, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=1.0)
        scale = self.step_scale * torch.tensor([s.lr_translation] * 3 + [s.lr_rotation] * 3, device=device)
        points = [refiner.depth_association(e.obs, e.pose) for e in entries]
        fixed = [(b.pose.detach(), b.obs.hand.contact_points) for b in self._before[-2:]]
        best_loss, best = math.inf, pose0.clone()
        run = AdamRun(optimizer)
        it = 0
        for it in range(self.iterations + 1):
            poses = apply_pose_delta(pose0, delta * scale)
            loss = self._window_loss(poses, entries, fixed, points, self.sigma)
            value = float(loss.detach())
            if not run.finite(value):
                break
            if value < best_loss:
                best_loss, best = value, poses.detach().clone()
            if it == self.iterations:
                break
            if not run.step(value, loss):
                break
        for e, pose in zip(entries, best):
            e.pose = pose
        st = self.stats
        st.windows += 1
        st.iterations += it
        st.initial_loss += run.initial if math.isfinite(run.initial) else 0.0
        st.final_loss += best_loss if math.isfinite(best_loss) else 0.0
        st.elapsed += time.perf_counter() - start
        st.stopped[run.stopped] = st.stopped.get(run.stopped, 0) + 1

    def _window_loss(self, poses: torch.Tensor, entries: list[_Entry], fixed: list[tuple[torch.Tensor, torch.Tensor]],
                     points: list, sigma: float) -> torch.Tensor:
        """Mean over the window of each frame's weighted loss, temporal terms on the window's own poses."""
        refiner = self.tracker.refiner
        # chain of (pose, hand contact points) in time order: the fixed frames before the window, then the window
        chain = list(fixed) + [(poses[i], e.obs.hand.contact_points) for i, e in enumerate(entries)]
        offset = len(fixed)
        total = None
        for i, entry in enumerate(entries):
            k = offset + i
            previous = [chain[j][0] for j in range(max(0, k - 2), k)]
            ctx = TemporalContext(previous_poses=previous)
            if k >= 1 and entry.contact_weights is not None:
                prev_pose, prev_points = chain[k - 1]
                ctx.contact_weights = entry.contact_weights
                ctx.contacts_object_prev = transform_points(invert_transform(prev_pose)[None], prev_points)
                ctx.previous_contact_points = prev_points
            terms = refiner.losses(poses[i:i + 1], entry.obs, ctx, sigma, points[i])
            part = refiner.total(terms)
            total = part if total is None else total + part
        return total / len(entries)
