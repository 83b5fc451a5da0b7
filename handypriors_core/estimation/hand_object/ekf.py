"""Joint hand-object EKF (paper Sec. III-E): the object pose on SE(3) with the MANO hand in the Euclidean extras,
quasistatic contact motion and fingertip / centre / contact observations (see
:mod:`handypriors_core.estimation.hand_object`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...checks import check_finite, check_shape
from ...errors import InvalidValueError, ShapeError
from ...geometry.camera import PinholeCamera
from ...geometry.transforms import transform_points
from ...models.mano import ManoHand
from ...models.rigid_object import RigidObject
from ...physics.quasistatic import contact_motion, contact_motion_fit
from ...physics.settings import ContactSettings
from .. import residuals
from ..ekf import EKFSettings, ErrorStateEKF, StepResult
from ..linearization import motion_jacobian, pose_tangent_jacobian
from ..pose_state import PoseState
from ..scene import HandObjectScene
from .params import _F64, FINGERTIP_KEYPOINTS, HandObjectObservation, ManoParams
from .settings import HandObjectEKFSettings


@dataclass
class HandObjectEKFStep:
    """What one :meth:`HandObjectEKF.step` did: whether contacts drove the object, each update's result."""

    used_contacts: bool
    updates: dict[str, StepResult]
    elapsed: float


def _pose_jacobian_to_tangent(J: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """``d pose / d p`` ``(4, 4, m)`` at ``pose (4, 4)`` -> the left tangent ``(rho, phi)`` rows ``(6, m)``."""
    return pose_tangent_jacobian(J.permute(2, 0, 1), pose[:3, :3])


class HandObjectEKF:
    """EKF over ``(object2camera, global_orient, transl, hand_pose)`` (see the module docstring).

    Like the object filter, it runs on the CPU in float64 (small dense matrices; a float64 copy of the MANO
    model), whatever the device of the hand given; inputs on other devices are moved.

    Args:
        hand: the MANO model (a float64 copy is used for the filter's models).
        obj: the object model; settings: :class:`HandObjectEKFSettings`; contact_settings: SDF query settings.
        betas: ``(S,)`` hand shape held fixed (default: the hand's ``betas`` buffer, or the initial params').
    """

    def __init__(self, hand: ManoHand, obj: RigidObject, settings: HandObjectEKFSettings | None = None,
                 contact_settings: ContactSettings | None = None):
        self.settings = settings if settings is not None else HandObjectEKFSettings()
        self.hand = copy.deepcopy(hand).to(device="cpu", dtype=_F64)
        #: the contact queries of the object tracker's terms (float64 object model)
        self.scene = HandObjectScene(self.hand, obj, "cpu", contact_settings=contact_settings, dtype=_F64)
        self.object = self.scene.object
        self.object_sdf = self.scene.object_sdf
        self.centre = torch.as_tensor(self.object.center, dtype=_F64)
        self.ekf: ErrorStateEKF | None = None
        self.betas: torch.Tensor | None = None
        self._contact_ids = torch.zeros(0, dtype=torch.long)
        self.last_process_jacobian: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ state
    @property
    def num_hand(self) -> int:
        """Number of hand extras ``6 + J``."""
        return 6 + self.hand.num_joints

    def _params_of(self, extra: torch.Tensor) -> ManoParams:
        return ManoParams.from_vector(extra[None], self.betas[None])

    @property
    def params(self) -> ManoParams:
        """Current hand estimate (batch 1, float64, CPU)."""
        return self._params_of(self.ekf.state.extra).detach()

    @property
    def object2camera(self) -> torch.Tensor:
        """``(4, 4)`` float64 current object estimate."""
        return self.ekf.pose

    @property
    def covariance(self) -> torch.Tensor:
        """``(n, n)`` float64 tangent covariance over ``(rho, phi, global_orient, transl, hand_pose)``."""
        return self.ekf.covariance

    def initialize(self, params: ManoParams, object2camera: torch.Tensor) -> None:
        """Start from hand ``params`` (batch 1) and ``object2camera (4, 4)`` with the initial uncertainties."""
        s = self.settings
        params = params.to("cpu", _F64)
        if params.batch_size != 1:
            raise ShapeError(f"params must hold one hand; got {params.batch_size}")
        params.check(self.hand, "params")
        check_shape(object2camera, (4, 4), "object2camera")
        check_finite(object2camera, "object2camera")
        self.betas = params.betas[0].clone()
        J = self.hand.num_joints
        var = [s.initial_std_translation ** 2] * 3 + [s.initial_std_rotation ** 2] * 3 + self._control_variances(J)
        state = PoseState.from_pose(object2camera.detach().to("cpu", _F64), params.vector()[0])
        self.ekf = ErrorStateEKF(state, torch.diag(torch.tensor(var, dtype=_F64)),
                                 EKFSettings(jacobian_mode="reverse_loop"))
        self._update_contacts()

    def _control_variances(self, J: int) -> list[float]:
        s = self.settings
        return [s.control_std_orient ** 2] * 3 + [s.control_std_transl ** 2] * 3 + [s.control_std_pose ** 2] * J

    def _hand_vertices(self, extra: torch.Tensor) -> torch.Tensor:
        return self._params_of(extra).forward(self.hand).vertices[0]

    def _update_contacts(self) -> None:
        """Contact vertices of the current estimate (ids into the MANO vertices)."""
        with torch.no_grad():
            verts = self._hand_vertices(self.ekf.state.extra)
            ids = self.hand.contact_vertex_ids
            d = self.object_sdf.signed_distance(verts[ids][None], self.ekf.pose[None]).distance[0]
        self._contact_ids = ids[d < self.settings.contact_distance]

    @property
    def contact_vertex_ids(self) -> torch.Tensor:
        """Ids of the MANO vertices taken as contacts for the next prediction."""
        return self._contact_ids

    # ---------------------------------------------------------------------------------------- predict
    def motion_model(self, control: ManoParams | None):
        """The motion model at the current state: ``(object_motion, f, u, valid)``.

        ``f(state, u) -> PoseState`` is the EKF's ``f``; ``object_motion(extra_prev, u, pose) -> (4, 4)`` its
        object part; ``u (6 + J,)`` the control vector; ``valid`` whether the contacts of ``t-1`` (at least
        ``min_contacts``, not collinear, moving rigidly within ``rigid_contact_tolerance``) drive the object
        (else the object is held: constant pose).
        """
        s = self.settings
        if control is not None:
            control = control.to("cpu", _F64)
            if control.batch_size != 1:
                raise ShapeError(f"control must hold one hand; got {control.batch_size}")
            control.check(self.hand, "control")
            u = control.vector()[0]
        else:
            u = self.ekf.state.extra.detach().clone()
        ids = self._contact_ids
        valid = False
        if ids.numel() >= s.quasistatic.min_contacts:
            with torch.no_grad():
                prev = self._hand_vertices(self.ekf.state.extra)[ids][None]
                cur = self._hand_vertices(u)[ids][None]
                w = torch.ones(1, ids.numel(), dtype=_F64)
                motion, ok = contact_motion(prev, cur, w, s.quasistatic)
                valid = bool(ok[0])
                if valid:  # the object filter's rigidity test: the motion explains the contacts' displacement
                    valid = float(contact_motion_fit(prev, cur, w, motion)[0][0]) < s.rigid_contact_tolerance
        hand, betas = self.hand, self.betas

        def object_motion(extra_prev: torch.Tensor, u_: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
            if not valid:
                return pose
            prev_v = ManoParams.from_vector(extra_prev[None], betas[None]).forward(hand).vertices[:, ids]
            cur_v = ManoParams.from_vector(u_[None], betas[None]).forward(hand).vertices[:, ids]
            motion_, _ = contact_motion(prev_v, cur_v, torch.ones(1, ids.numel(), dtype=_F64), s.quasistatic)
            return motion_[0] @ pose

        def f(state: PoseState, u_: torch.Tensor) -> PoseState:
            return PoseState(object_motion(state.extra, u_, state.pose), u_ + 0.0 * state.extra)

        return object_motion, f, u, valid

    def predict(self, control: ManoParams | None) -> bool:
        """Motion model: hand <- control (or held), object <- contact motion of Eq. 9; returns whether contacts
        drove the object. ``control``: the external hand estimate of this frame (batch 1), or None."""
        s = self.settings
        n_hand = self.num_hand
        object_motion, f, u, valid = self.motion_model(control)
        std_t, std_r = (s.process_std_translation, s.process_std_rotation) if valid else \
            (s.free_std_translation, s.free_std_rotation)

        # Jacobians (autodiff through MANO and Kabsch): object_t = M(hand_{t-1}, u) @ object_{t-1}, so
        # F_oo = blockdiag(R_M, R_M) (left tangent), F_oh = d object_t / d hand_{t-1}, F_ho = F_hh = 0 (hand <- u).
        # Process noise: the control's noise w enters the hand (hand_t = u + w) and, through the contact motion,
        # the object: Q = G diag(var_u) G^T + object noise, G = d f / d u (so correcting the hand corrects the
        # object through their cross-covariance).
        n = 6 + n_hand
        var_u = torch.tensor(self._control_variances(n_hand - 6), dtype=_F64)
        F = torch.zeros(n, n, dtype=_F64)
        G = torch.cat((torch.zeros(6, n_hand, dtype=_F64), torch.eye(n_hand, dtype=_F64)), 0)
        extra0, pose0 = self.ekf.state.extra.detach(), self.ekf.pose.detach()
        if valid:
            with torch.enable_grad():
                J_prev, J_u = torch.autograd.functional.jacobian(
                    lambda prev_, uu: object_motion(prev_, uu, pose0), (extra0, u))  # (4, 4, m) each
            with torch.no_grad():
                pose_pred = object_motion(extra0, u, pose0)
            F[:6, :6] = motion_jacobian(pose_pred[:3, :3] @ pose0[:3, :3].transpose(0, 1))
            F[:6, 6:] = _pose_jacobian_to_tangent(J_prev, pose_pred)
            G[:6] = _pose_jacobian_to_tangent(J_u, pose_pred)
        else:
            F[:6, :6] = torch.eye(6, dtype=_F64)
        Q = G @ torch.diag(var_u) @ G.transpose(0, 1)
        Q[:6, :6] += torch.diag(torch.tensor([std_t ** 2] * 3 + [std_r ** 2] * 3, dtype=_F64))
        self.ekf.predict(f, u, 0.5 * (Q + Q.transpose(0, 1)), jacobian=F)
        self.last_process_jacobian = F
        return valid

    # ----------------------------------------------------------------------------------------- update
    def update(self, observation: HandObjectObservation) -> dict[str, StepResult]:
        """Apply the configured observations that ``observation`` carries; returns each one's result."""
        s = self.settings
        gate = None if s.gate_probability >= 1 else s.gate_probability
        cam = observation.camera.to("cpu", _F64)
        results: dict[str, StepResult] = {}
        for name in s.observations:
            res = None
            if name == "fingertips" and observation.keypoints is not None:
                res = self._update_keypoints(observation, cam, gate)
            elif name == "centre" and observation.object_centre is not None:
                res = self._update_centre(observation, cam, gate)
            elif name == "contact":
                res = self._update_contact(gate)
            if res is not None:
                results[name] = res
        self._update_contacts()
        return results

    def _update_centre(self, observation: HandObjectObservation, cam: PinholeCamera, gate) -> StepResult:
        """O_object: the projected object centre against the detected one [px] (z = 0); closed-form Jacobian
        (:func:`~..residuals.reprojection_jacobian`; the hand block is 0)."""
        pose = self.ekf.pose
        posed = transform_points(pose[None], self.centre[None, None])  # (1, 1, 3)
        r = residuals.reprojection_residuals(cam, posed, observation.object_centre.to("cpu", _F64)[None])[0, 0]
        J = torch.zeros(2, 6 + self.num_hand, dtype=_F64)
        J[:, :6] = residuals.reprojection_jacobian(cam, posed[0], pose[:3, 3])[0]
        return self.ekf.update(torch.zeros(2, dtype=_F64), lambda state: r,
                               torch.full((2,), self.settings.centre_std ** 2, dtype=_F64), jacobian=J,
                               gate_probability=gate)

    def _update_keypoints(self, observation: HandObjectObservation, cam: PinholeCamera, gate) -> StepResult | None:
        s = self.settings
        conf = observation.confidences().to("cpu", _F64)
        if s.keypoints == "fingertips":
            idx = torch.tensor(FINGERTIP_KEYPOINTS)
            idx = idx[conf[idx] > 0]
        else:
            idx = torch.nonzero(conf > 0)[:, 0]
        if idx.numel() == 0:
            return None
        z = observation.keypoints.to("cpu", _F64)[idx].reshape(-1)
        var = (s.keypoint_std ** 2 / conf[idx]).repeat_interleave(2)
        hand, betas = self.hand, self.betas
        pixels = z.reshape(-1, 2)

        def h_keypoints(state: PoseState) -> torch.Tensor:  # the optimizer's keypoint residuals [px], z = 0
            out = ManoParams.from_vector(state.extra[None], betas[None]).forward(hand)
            return residuals.reprojection_residuals(cam, out.keypoints[:, idx], pixels)[0].reshape(-1)

        return self.ekf.update(torch.zeros_like(z), h_keypoints, var, gate_probability=gate)

    def _update_contact(self, gate) -> StepResult | None:
        """Contact prior: hand vertices in contact at t-1 stay on the object surface, ``z = 0``,
        ``h = d(v(theta), object2camera)`` (:func:`~..residuals.hand_point_residuals`, the object filter's contact
        residual); Jacobian ``[-n^T, (n x (v - t))^T | n^T dv/dtheta]``: the pose block closed form, the hand block
        by autodiff of MANO (:func:`~..residuals.hand_point_jacobian`)."""
        ids = self._contact_ids
        if ids.numel() == 0:
            return None
        hand, betas = self.hand, self.betas
        pose0 = self.ekf.pose
        extra0 = self.ekf.state.extra.detach()
        with torch.no_grad():
            verts = self._hand_vertices(extra0)[ids]
            sd = self.object_sdf.signed_distance(verts[None], pose0[None])
        d0, normals = sd.distance[0], sd.normal[0]
        r = residuals.hand_point_residuals(d0, 0.0)

        def contact_points(extra: torch.Tensor) -> torch.Tensor:  # (6 + J,) -> (K, 3) [m, camera frame]
            return ManoParams.from_vector(extra[None], betas[None]).forward(hand).vertices[0, ids]

        block = residuals.hand_parameter_jacobian(contact_points, extra0, normals)
        J = residuals.hand_point_jacobian(verts, normals, pose0[:3, 3], block)
        z = torch.zeros(ids.numel(), dtype=_F64)
        return self.ekf.update(z, lambda state: r, torch.full((ids.numel(),), self.settings.contact_std ** 2,
                                                                dtype=_F64), jacobian=J, gate_probability=gate)

    def step(self, observation: HandObjectObservation | None, control: ManoParams | None) -> HandObjectEKFStep:
        """Predict with ``control`` (the external hand estimate), then update with ``observation``."""
        start = time.perf_counter()
        used = self.predict(control)
        updates = self.update(observation) if observation is not None else {}
        return HandObjectEKFStep(used, updates, time.perf_counter() - start)

    def track(self, observations: Sequence[HandObjectObservation], controls: ManoParams | None,
              init_params: ManoParams | None = None, init_object2camera: torch.Tensor | None = None
              ) -> tuple[ManoParams, torch.Tensor, list[HandObjectEKFStep]]:
        """Filter a whole sequence: returns hand params ``(T)``, ``object2camera (T, 4, 4)`` and the steps.

        The filter starts (when ``init_*`` are given, else from its current state) at the first frame, which
        is then only updated (no prediction); ``controls`` are the per-frame external hand estimates ``(T)``.
        """
        T = len(observations)
        if controls is not None and controls.batch_size != T:
            raise ShapeError(f"controls hold {controls.batch_size} hands for {T} observations")
        if init_params is not None or init_object2camera is not None:
            if init_params is None or init_object2camera is None:
                raise InvalidValueError("give both init_params and init_object2camera, or neither")
            self.initialize(init_params, init_object2camera)
        if self.ekf is None:
            raise InvalidValueError("the filter is not initialised: pass init_params and init_object2camera")
        params, poses, steps = [], [], []
        for t, obs in enumerate(observations):
            start = time.perf_counter()
            if t == 0 and init_params is not None:
                step = HandObjectEKFStep(False, self.update(obs), 0.0)
                step.elapsed = time.perf_counter() - start
            else:
                step = self.step(obs, controls[t] if controls is not None else None)
            steps.append(step)
            params.append(self.params)
            poses.append(self.object2camera.clone())
        return ManoParams.cat(params), torch.stack(poses), steps
