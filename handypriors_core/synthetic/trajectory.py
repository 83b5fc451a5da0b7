"""Motion of a synthetic sequence: per-frame joint angles, hand base pose, object pose in the hand, camera pose.

Frames ``0 .. n_close - 1`` close the grasp: the object rests on the static palm and every closing finger
goes from its open pose to its contact configuration (curl ``s`` eased from 0 to the solved value). The
remaining frames perform the motion of :class:`~.scenario.MotionSettings` with an eased phase
``u`` in [0, 1] (smoothstep), see :func:`build_trajectory`. Everything is a deterministic function of the
scenario (no randomness here).

World frame: ``+z`` up, hand root at the origin at frame 0, palm up (hand ``+x`` = world ``+z``), fingers
along world ``+x`` (so the ring-finger side, hand ``-y``, is world ``+y``). The camera is static in the world.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from ..geometry.rotations import axis_angle_to_matrix, rpy_to_matrix
from .grasp import GraspModel
from .objects import ObjectMesh
from .scenario import Scenario

__all__ = ["HAND2WORLD_0", "Trajectory", "build_trajectory", "look_at", "smoothstep"]

#: Hand root pose in the world at frame 0 (palm up, fingers along world +x).
HAND2WORLD_0 = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def smoothstep(u):
    """``3u^2 - 2u^3`` of ``u`` clipped to [0, 1] (zero velocity at both ends)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _rpy(rpy) -> np.ndarray:
    return rpy_to_matrix(torch.as_tensor(np.asarray(rpy, np.float64))).numpy()


def _axis_angle(axis_angle) -> np.ndarray:
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(axis_angle, np.float64))).numpy()


def _transform(R: np.ndarray | None = None, t=None) -> np.ndarray:
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    if t is not None:
        T[:3, 3] = t
    return T


def _about(point, R: np.ndarray) -> np.ndarray:
    """Rotation ``R`` about ``point`` as a 4x4 transform."""
    p = np.asarray(point, np.float64)
    return _transform(R, p - R @ p)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """``camera2world (4, 4)`` of an optical frame (x right, y down, z forward) at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight up/down: any right vector
        x = np.cross(z, (1.0, 0.0, 0.0))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return _transform(np.stack([x, y, z], 1), eye)


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """Per-frame state of a sequence (numpy float64, metres, radians, seconds).

    Attributes:
        stamps: ``(N,)`` [s]; stamps_ns: ``(N,)`` int64 (exact).
        joint_positions: ``(N, J)`` in ``URDFHand.joint_names`` order. curl: ``(N, 4)`` finger curl values.
        hand2world, object2hand: ``(N, 4, 4)``. camera2world: ``(4, 4)``. base_moving: whether hand2world varies.
        close_frames: number of frames of the closing phase. camera_target: ``(3,)`` world point the camera
            looks at.
        hand2world_at: the hand base pose at a fractional frame index (for transforms between camera frames).
    """

    stamps: np.ndarray
    stamps_ns: np.ndarray
    joint_positions: np.ndarray
    curl: np.ndarray
    hand2world: np.ndarray
    object2hand: np.ndarray
    camera2world: np.ndarray
    base_moving: bool
    close_frames: int
    camera_target: np.ndarray
    hand2world_at: Callable[[float], np.ndarray]

    @property
    def world2camera(self) -> np.ndarray:
        return np.linalg.inv(self.camera2world)

    @property
    def hand2camera(self) -> np.ndarray:
        """``(N, 4, 4)`` hand root pose in the camera frame."""
        return self.world2camera @ self.hand2world

    @property
    def object2camera(self) -> np.ndarray:
        """``(N, 4, 4)`` ground-truth object pose in the camera frame."""
        return self.world2camera @ self.hand2world @ self.object2hand

    def hand2camera_at(self, frame: float) -> np.ndarray:
        """Hand root pose in the camera frame at a fractional frame index."""
        return self.world2camera @ self.hand2world_at(frame)


def build_trajectory(scenario: Scenario, grasp: GraspModel, mesh: ObjectMesh) -> Trajectory:
    """Plan the sequence of ``scenario`` and solve the finger closing with ``grasp`` (batched over frames).

    - ``carry``: object2hand is fixed after placement; the hand base lifts/shifts (world) and turns about the
      wrist point (hand frame) along the eased phase; fingers stay at their contact configuration.
    - ``rotate``: hand base fixed; the object turns about ``rotate_axis`` (hand frame) through its centre;
      fingers re-closed on every frame.
    - ``pivot``: hand base fixed; the object tips by ``pivot_angle`` about its bottom edge on the finger side
      (axis hand y, top towards the fingers); fingers re-closed on every frame.
    """
    N, fps = scenario.frames, scenario.fps
    motion = scenario.motion
    start_ns = round(scenario.start_stamp * 1e9)
    stamps_ns = start_ns + np.round(np.arange(N) * 1e9 / fps).astype(np.int64)
    stamps = scenario.start_stamp + np.arange(N) / fps
    n_close = max(1, round(motion.close_fraction * N))
    n_close = min(n_close, N - 1)

    def close_phase(f):
        return np.ones_like(np.asarray(f, np.float64)) if n_close == 1 else smoothstep(np.asarray(f) / (n_close - 1))

    def phase(f):
        u = (np.asarray(f, np.float64) - (n_close - 1)) / max(N - n_close, 1)
        return smoothstep(u)

    dtype, device = grasp.dtype, grasp.device
    R_obj = torch.as_tensor(_rpy(scenario.grasp.object_rpy), dtype=dtype, device=device)
    object2hand_0 = grasp.rest_on_palm(R_obj, scenario.grasp.object_yz).cpu().double().numpy()
    centre_hand = object2hand_0[:3, :3] @ mesh.center + object2hand_0[:3, 3]

    if motion.kind == "carry":
        p = np.asarray(motion.wrist_point, np.float64)
        lift = np.array([motion.shift[0], motion.shift[1], motion.lift])

        def hand2world_at(f: float) -> np.ndarray:
            u = float(phase(f))
            return _transform(None, lift * u) @ HAND2WORLD_0 @ _about(p, _rpy(np.asarray(motion.wrist_rpy) * u))

        def object2hand_at(f: float) -> np.ndarray:
            return object2hand_0
    else:
        if motion.kind == "rotate":
            axis = np.asarray(motion.rotate_axis, np.float64)
            axis /= np.linalg.norm(axis)
            point, angle = centre_hand, motion.rotate_angle
        else:  # pivot about the bottom edge on the finger side (+z), top towards the fingers
            verts = mesh.verts @ object2hand_0[:3, :3].T + object2hand_0[:3, 3]
            bottom = verts[:, 0] < verts[:, 0].min() + 1e-3
            point = np.array([verts[:, 0].min(), centre_hand[1], verts[bottom, 2].max()])
            axis, angle = np.array([0.0, -1.0, 0.0]), motion.pivot_angle

        def hand2world_at(f: float) -> np.ndarray:
            return HAND2WORLD_0.copy()

        def object2hand_at(f: float) -> np.ndarray:
            u = float(phase(f))
            a = angle * (math.sin(math.pi * u) if motion.oscillate else u)
            return _about(point, _axis_angle(axis * a)) @ object2hand_0

    frames = np.arange(N, dtype=np.float64)
    hand2world = np.stack([hand2world_at(f) for f in frames])
    object2hand = np.stack([object2hand_at(f) for f in frames])

    # finger closing: solved on the last closing frame (object still at rest) and, for rotate/pivot, on every
    # later frame (one batch)
    solve_frames = np.arange(n_close - 1, N) if motion.kind != "carry" else np.array([n_close - 1])
    T = torch.as_tensor(object2hand[solve_frames], dtype=dtype, device=device)
    _, s_solved, _ = grasp.close(T)
    s_solved = s_solved.double().cpu().numpy()
    curl = np.zeros((N, s_solved.shape[1]))
    curl[:n_close] = close_phase(frames[:n_close])[:, None] * s_solved[0]
    curl[n_close:] = s_solved[1:] if motion.kind != "carry" else s_solved[0]
    q = grasp.q_at(torch.as_tensor(curl, dtype=dtype, device=device)).double().cpu().numpy()

    # camera: looks at the object's frame-0 centre (plus half the carry lift) from the configured direction
    cam = scenario.camera
    target = HAND2WORLD_0[:3, :3] @ centre_hand + np.asarray(cam.target_offset, np.float64)
    if motion.kind == "carry":
        target = target + 0.5 * np.array([motion.shift[0], motion.shift[1], motion.lift])
    direction = np.array([math.cos(cam.elevation) * math.cos(cam.azimuth),
                          math.cos(cam.elevation) * math.sin(cam.azimuth), math.sin(cam.elevation)])
    camera2world = look_at(target + cam.distance * direction, target)
    return Trajectory(
        stamps=stamps, stamps_ns=stamps_ns, joint_positions=q, curl=curl, hand2world=hand2world,
        object2hand=object2hand, camera2world=camera2world,
        base_moving=not np.allclose(hand2world, hand2world[:1], atol=1e-12),
        close_frames=n_close, camera_target=target, hand2world_at=hand2world_at,
    )
