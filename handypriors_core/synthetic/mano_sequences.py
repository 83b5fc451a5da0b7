"""Generated MANO-hand + object sequences with known ground truth (tests, benchmarks, the demo).

The hand is any MANO-format model (the synthetic test model of :mod:`.mano_test_model` in tests; the official
files work too, they are never shipped). Everything is deterministic for a given seed.

**Grasp** (:func:`make_mano_grasp`): the object is placed in front of the palm of the flat hand and moved along
the palm normal until it first comes within ``clearance`` of the hand; then every finger closes (all three
joints of a finger rotate by the same angle ``s`` about its flexion axis, the thumb towards the palm's centre
line) until it first comes within ``clearance`` of the object. The first touch is bracketed on a grid of
``grid_steps`` angles evaluated as one batch and refined by ``bisection_steps`` bisections run for all five
fingers at once (their vertices move independently). Fingers that never touch end fully flexed. The grasp's
contact map is the exact contact value ``CO = min(1 / s_mm, 1)`` of every hand vertex.

Frames: the MANO model frame of the grasp (``global_orient = 0``, ``transl = 0``) holds the object at
``object2model``; palm axes (a proper rotation): ``y`` from the wrist to the middle knuckle, ``z`` the palm
normal (out of the palm), ``x = y cross z`` across the knuckles.

**Sequence** (:func:`make_mano_sequence`): the grasped object moves rigidly with the hand in front of a pinhole
camera (ROS optical frame): the model frame is turned by ``exp(omega_t) R_base`` about the object centre,
which follows a smooth loop around ``(0, 0, distance)``. Ground truth per frame: MANO parameters in the camera
frame, ``object2camera``, hand vertices / joints / 21 keypoints (3D and 2D), the projected object centre and
(optionally) visible instance masks of hand and object (the soft rasterizer at a vanishing blur, whose
fragments are depth-sorted). Noisy "network" hand
estimates and keypoint detections are derived with :meth:`ManoSequence.hand_estimates` and
:meth:`ManoSequence.observation`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import require
from ..errors import InvalidValueError
from ..estimation.hand_object import HandObjectObservation, ManoParams, mano_rigid_transform
from ..geometry.camera import PinholeCamera
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..geometry.transforms import make_transform, transform_points
from ..models.mano import ManoHand
from ..models.rigid_object import RigidObject
from ..physics.contact import contact_value
from ..physics.sdf import ObjectSDF
from ..render.renderer import Renderer, join_meshes

__all__ = [
    "ManoGrasp",
    "ManoGraspSettings",
    "ManoSequence",
    "ManoSequenceSettings",
    "default_grasp_object",
    "finger_flexion_axes",
    "grasp_params",
    "make_mano_grasp",
    "make_mano_sequence",
    "palm_frame",
]

# MANO joints of each finger (thumb, index, middle, ring, little), knuckle first
_FINGER_JOINTS = ((13, 14, 15), (1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9))
# rasterizer sharpness [px^2] of the ground-truth masks: edges within ~0.03 px
_MASK_SIGMA = 1e-4


_require = functools.partial(require, error=InvalidValueError)  # these settings raise InvalidValueError


@dataclass(frozen=True)
class ManoGraspSettings:
    """How :func:`make_mano_grasp` places the object and closes the fingers.

    Attributes:
        object_rotation: ``(3,)`` axis-angle [rad] of the object in the palm axes (x across, y along the
            fingers, z out of the palm).
        palm_position: ``(a, b)`` where the object centre sits over the palm, as fractions of the palm width
            (from the palm centre towards the little finger) and of the wrist-knuckle length (from the wrist).
        clearance: gap [m] left between the first touching hand vertex and the object (at most 1 mm keeps the
            touching vertices at contact value 1).
        max_flexion: largest flexion [rad] of each finger joint.
        grid_steps, bisection_steps: bracketing grid and bisections of the first touch.
    """

    object_rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    palm_position: tuple[float, float] = (0.1, 0.7)
    clearance: float = 0.0002
    max_flexion: float = 1.0
    grid_steps: int = 24
    bisection_steps: int = 14

    def __post_init__(self) -> None:
        _require(0 < self.clearance <= 0.01, f"clearance must be in (0, 0.01] m; got {self.clearance}")
        _require(0 < self.max_flexion <= math.pi, f"max_flexion must be in (0, pi]; got {self.max_flexion}")
        _require(self.grid_steps >= 2 and self.bisection_steps >= 1, "grid_steps >= 2 and bisection_steps >= 1")


@dataclass(frozen=True)
class ManoGrasp:
    """A grasp in the MANO model frame.

    Attributes:
        hand_pose: ``(J,)`` the hand's ``hand_pose`` input (axis-angle relative to its mean; J = 45).
        full_pose: ``(45,)`` [rad] the finger axis-angles applied (mean included).
        betas: ``(S,)`` shape used.
        object2model: ``(4, 4)`` object pose in the model frame.
        vertices: ``(V, 3)`` [m] posed hand, model frame.
        contact_map: ``(V,)`` exact contact values ``min(1 / s_mm, 1)`` of the hand vertices.
        signed_distance: ``(V,)`` [m] hand vertices to the object, negative inside.
        flexion: ``(5,)`` [rad] flexion of thumb, index, middle, ring, little.
        touching: ``(5,)`` bool, fingers that reached the object.
    """

    hand_pose: torch.Tensor
    full_pose: torch.Tensor
    betas: torch.Tensor
    object2model: torch.Tensor
    vertices: torch.Tensor
    contact_map: torch.Tensor
    signed_distance: torch.Tensor
    flexion: torch.Tensor
    touching: torch.Tensor


def default_grasp_object(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> RigidObject:
    """A box of 8 x 6 x 4.5 cm (across the palm x along the fingers x palm normal), 600 samples."""
    return RigidObject.box([0.08, 0.06, 0.045], max_edge=0.01, n_samples=600, device=device, dtype=dtype)


def palm_frame(hand: ManoHand, betas: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Palm axes ``(3, 3)`` (columns: x = y cross z across the knuckles, y wrist to middle knuckle, z out of the palm),
    the wrist joint ``(3,)`` and the knuckle line's length and width ``(2,)`` [m] of the rest hand (model frame)."""
    J = _rest_joints(hand, betas)
    across = J[7] - J[1]
    along = J[4] - J[0]
    sign = 1.0 if hand.side == "right" else -1.0
    normal = -sign * torch.linalg.cross(across, along)  # palm side (the back of the hand is the other way)
    z = normal / normal.norm()
    y = along - (along @ z) * z
    y = y / y.norm()
    x = torch.linalg.cross(y, z)  # a proper rotation: across the knuckles (towards the index on a right hand)
    return torch.stack((x, y, z), 1), J[0], torch.stack((along.norm(), across.norm()))


def _rest_joints(hand: ManoHand, betas: torch.Tensor | None) -> torch.Tensor:
    """Joints ``(16, 3)`` of the flat rest hand (full pose zero)."""
    flat = -hand.full_hand_pose(hand.default_joint_angles()[None]) if not hand.use_pca else None
    if flat is None:
        raise InvalidValueError("the grasp generator needs a MANO hand with use_pca=False")
    return hand(hand_pose=flat, betas=betas[None] if betas is not None else None).joints[0]


def finger_flexion_axes(hand: ManoHand, betas: torch.Tensor | None = None) -> torch.Tensor:
    """``(5, 45)`` full-pose directions flexing each finger (thumb, index, middle, ring, little) towards the palm:
    the same unit axis on its three joints (fingers: ``finger x palm normal``; thumb: towards the palm's centre
    line and the palm side)."""
    J = _rest_joints(hand, betas)
    axes, _, _ = palm_frame(hand, betas)
    z_palm = axes[:, 2]
    x_little = (J[7] - J[1]) / (J[7] - J[1]).norm()
    out = torch.zeros(5, 16, 3, dtype=J.dtype, device=J.device)
    for f, chain in enumerate(_FINGER_JOINTS):
        d = J[chain[2]] - J[chain[0]]
        d = d / d.norm()
        target = z_palm if f > 0 else (z_palm + x_little) / math.sqrt(2.0)
        target = target - (target @ d) * d
        axis = torch.linalg.cross(d, target)
        out[f, list(chain)] = axis / axis.norm()
    return out[:, 1:].reshape(5, 45)


def make_mano_grasp(
    hand: ManoHand,
    obj: RigidObject,
    settings: ManoGraspSettings | None = None,
    betas: torch.Tensor | None = None,
) -> ManoGrasp:
    """Close the hand on ``obj`` (see the module docstring). ``hand`` must not use PCA; any dtype / device."""
    s = settings if settings is not None else ManoGraspSettings()
    if hand.use_pca:
        raise InvalidValueError("make_mano_grasp needs a MANO hand with use_pca=False")
    dtype, device = hand.dtype, hand.device
    betas = (hand.betas if betas is None else betas).to(device=device, dtype=dtype)
    sdf = ObjectSDF(obj.verts.to(device=device, dtype=dtype), obj.faces.to(device))
    mean = hand.full_hand_pose(hand.default_joint_angles()[None])[0]  # hand_pose 0 -> this full pose
    axes, wrist, size = palm_frame(hand, betas)
    J = _rest_joints(hand, betas)
    knuckles = J[[1, 4, 7, 10]].mean(0)
    a, b = s.palm_position
    x_little = (J[7] - J[1]) / size[1]
    centre = wrist + b * (knuckles - wrist) + a * size[1] * x_little
    R = axes @ axis_angle_to_matrix(torch.tensor(s.object_rotation, dtype=dtype, device=device))
    flex = finger_flexion_axes(hand, betas)

    def verts_of(full: torch.Tensor) -> torch.Tensor:
        return hand(hand_pose=full - mean, betas=betas.expand(full.shape[0], -1)).vertices

    def object_distance(verts: torch.Tensor, object2model: torch.Tensor) -> torch.Tensor:
        return sdf.signed_distance(verts, object2model).distance

    # 1. slide the object along the palm normal towards the flat hand until it comes within the clearance
    flat_verts = verts_of(torch.zeros(1, 45, dtype=dtype, device=device))
    reach = float(obj.diameter) + 0.1
    lo, hi = 0.0, reach  # offset along +z (out of the palm): hi is free, lo may overlap
    offsets = torch.linspace(0.0, reach, 64, dtype=dtype, device=device)
    poses = make_transform(R.expand(64, 3, 3), centre + offsets[:, None] * axes[:, 2])
    d = object_distance(flat_verts.expand(64, -1, -1), poses).amin(-1)
    free = d > s.clearance
    first = int(torch.nonzero(free)[0]) if bool(free.any()) else 63
    lo, hi = float(offsets[max(first - 1, 0)]), float(offsets[first])
    for _ in range(s.bisection_steps + 10):
        mid = 0.5 * (lo + hi)
        pose = make_transform(R, centre + mid * axes[:, 2])[None]
        if float(object_distance(flat_verts, pose).amin()) > s.clearance:
            hi = mid
        else:
            lo = mid
    object2model = make_transform(R, centre + hi * axes[:, 2])

    # 2. close the fingers: per finger, the first flexion within the clearance of the object
    groups = torch.zeros(5, hand.num_vertices, dtype=torch.bool, device=device)
    for f, chain in enumerate(_FINGER_JOINTS):
        groups[f] = torch.isin(hand.vertex_link, torch.tensor(chain, device=device))

    def finger_distance(flexion: torch.Tensor) -> torch.Tensor:
        """``flexion (G, 5)`` -> closest distance of each finger to the object ``(G, 5)``."""
        verts = verts_of(flexion @ flex)
        dist = object_distance(verts, object2model.expand(verts.shape[0], 4, 4))
        return torch.where(groups[None], dist[:, None, :], torch.full_like(dist[:, None, :], math.inf)).amin(-1)

    grid = torch.linspace(0.0, s.max_flexion, s.grid_steps, dtype=dtype, device=device)
    dist = finger_distance(grid[:, None].expand(-1, 5))  # (G, 5)
    hit = dist <= s.clearance
    touching = hit.any(0)
    first = torch.where(touching, hit.float().argmax(0), torch.full_like(touching, s.grid_steps - 1, dtype=torch.long))
    lo = torch.where(touching, grid[(first - 1).clamp_min(0)], grid[first])
    hi = grid[first]
    lo = torch.where(first == 0, torch.zeros_like(lo), lo)
    for _ in range(s.bisection_steps):
        mid = 0.5 * (lo + hi)
        inside = finger_distance(mid[None])[0] <= s.clearance
        hi = torch.where(touching & inside, mid, hi)
        lo = torch.where(touching & ~inside, mid, lo)
    flexion = torch.where(touching, lo, hi)
    full = (flexion[None] @ flex)[0]
    verts = verts_of(full[None])[0]
    sd = object_distance(verts[None], object2model[None])[0]
    return ManoGrasp(hand_pose=full - mean, full_pose=full, betas=betas, object2model=object2model,
                     vertices=verts, contact_map=contact_value(sd), signed_distance=sd, flexion=flexion,
                     touching=touching)


def grasp_params(hand: ManoHand, grasp: ManoGrasp, model2world: torch.Tensor | None = None) -> ManoParams:
    """MANO parameters (batch 1) of ``grasp`` with the model frame at ``model2world (4, 4)``; default: the
    frame in which the object sits at the identity (``model2world = object2model^-1``)."""
    dtype, device = hand.dtype, hand.device
    if model2world is None:
        model2world = torch.linalg.inv(grasp.object2model.double()).to(dtype)
    R, t = model2world[:3, :3].to(device, dtype), model2world[:3, 3].to(device, dtype)
    zero = torch.zeros(1, 3, dtype=dtype, device=device)
    J0 = hand(hand_pose=grasp.hand_pose[None], betas=grasp.betas[None], global_orient=zero, transl=zero).joints[0, 0]
    # R (p - J0) + J0 + transl = R p + t  ->  transl = t - J0 + R J0
    return ManoParams(matrix_to_axis_angle(R)[None], grasp.hand_pose[None].clone(), grasp.betas[None].clone(),
                      (t - J0 + R @ J0)[None])


# ================================================================================================ sequences


@dataclass(frozen=True)
class ManoSequenceSettings:
    """Camera and motion of :func:`make_mano_sequence`.

    Attributes:
        num_frames: frames T.
        width, height, focal: pinhole camera [px] (principal point at the image centre).
        distance: depth [m] of the object centre at the middle of the loop.
        view_direction: ``(3,)`` direction from the object to the camera at rest, in the grasp's model frame
            (default: from the palm and thumb side, so that object and fingers are both visible).
        view_up: ``(3,)`` model-frame direction shown upwards in the image (default: along the fingers).
        translation_amplitude: [m] of the loop of the object centre (x, y, z: half of it in depth).
        rotation_amplitude: [rad] of the hand's rotation about the object centre.
        render_masks: render the visible instance masks (z-buffer).
    """

    num_frames: int = 12
    width: int = 320
    height: int = 240
    focal: float = 440.0
    distance: float = 0.5
    view_direction: tuple[float, float, float] = (-0.55, 0.1, -0.8)
    view_up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    translation_amplitude: float = 0.03
    rotation_amplitude: float = 0.3
    render_masks: bool = True

    def __post_init__(self) -> None:
        _require(self.num_frames >= 1, f"num_frames must be >= 1; got {self.num_frames}")
        _require(self.width >= 8 and self.height >= 8, "width and height must be >= 8 px")
        _require(self.focal > 0 and self.distance > 0.1, "focal must be > 0 px and distance > 0.1 m")


@dataclass(frozen=True)
class ManoSequence:
    """A generated sequence (CPU tensors in the hand's dtype; masks bool).

    Attributes:
        hand: the MANO model; obj: the object; grasp: the grasp held throughout.
        camera: intrinsics.
        params: ground-truth :class:`ManoParams` ``(T)`` in the camera frame.
        object2camera: ``(T, 4, 4)``.
        vertices: ``(T, V, 3)`` [m]; joints: ``(T, 16, 3)``; keypoints: ``(T, 21, 3)`` [m];
        keypoints_2d: ``(T, 21, 2)`` [px]; object_centre_2d: ``(T, 2)`` [px] (projected bounding-box centre).
        hand_mask, object_mask: ``(T, H, W)`` bool visible instance masks (None without ``render_masks``).
    """

    hand: ManoHand
    obj: RigidObject
    grasp: ManoGrasp
    camera: PinholeCamera
    params: ManoParams
    object2camera: torch.Tensor
    vertices: torch.Tensor
    joints: torch.Tensor
    keypoints: torch.Tensor
    keypoints_2d: torch.Tensor
    object_centre_2d: torch.Tensor
    hand_mask: torch.Tensor | None
    object_mask: torch.Tensor | None

    @property
    def num_frames(self) -> int:
        return self.object2camera.shape[0]

    def hand_estimates(self, pose_std: float = 0.1, orient_std: float = 0.05, transl_std: float = 0.01,
                       bias_fraction: float = 0.5, seed: int = 0) -> ManoParams:
        """Noisy "network" hand estimates ``(T)``: ground truth plus a per-sequence bias (``bias_fraction`` of
        the variance) and white noise (the rest); stds in rad (pose, orientation) and metres."""
        g = torch.Generator().manual_seed(seed)
        T = self.num_frames
        p = self.params

        def noise(shape, std):
            b = torch.randn((1,) + shape[1:], generator=g, dtype=torch.float64) * std * math.sqrt(bias_fraction)
            w = torch.randn(shape, generator=g, dtype=torch.float64) * std * math.sqrt(1 - bias_fraction)
            return (b + w).to(p.dtype)

        return ManoParams(p.global_orient + noise((T, 3), orient_std), p.hand_pose + noise(tuple(p.hand_pose.shape),
                          pose_std), p.betas.clone(), p.transl + noise((T, 3), transl_std))

    def observation(self, t: int, keypoint_std: float = 0.0, centre_std: float = 0.0, masks: bool = True,
                    keypoints: bool = True, fingertips_only: bool = False, seed: int = 0) -> HandObjectObservation:
        """The detections of frame ``t``: masks, 2D keypoints (+ Gaussian noise [px]), object centre [px]."""
        if not 0 <= t < self.num_frames:
            raise InvalidValueError(f"frame {t} outside [0, {self.num_frames})")
        g = torch.Generator().manual_seed(seed * 100003 + t)
        kp = conf = None
        if keypoints:
            kp = self.keypoints_2d[t] + keypoint_std * torch.randn(21, 2, generator=g, dtype=torch.float64).to(
                self.keypoints_2d)
            conf = torch.ones(21, dtype=kp.dtype)
            if fingertips_only:
                from ..estimation.hand_object import FINGERTIP_KEYPOINTS

                conf = torch.zeros(21, dtype=kp.dtype)
                conf[list(FINGERTIP_KEYPOINTS)] = 1.0
        centre = self.object_centre_2d[t] + centre_std * torch.randn(2, generator=g, dtype=torch.float64).to(
            self.object_centre_2d)
        hm = om = None
        if masks and self.hand_mask is not None:
            hm, om = self.hand_mask[t].float(), self.object_mask[t].float()
        return HandObjectObservation(camera=self.camera, hand_mask=hm, object_mask=om, keypoints=kp,
                                     keypoint_confidence=conf, object_centre=centre)


def _smooth_loop(T: int, phase: np.ndarray) -> np.ndarray:
    """``(T, k)`` values in [-1, 1]: a sine per column with its own phase (one period over the sequence)."""
    u = np.arange(T)[:, None] / max(T, 1)
    return np.sin(2 * np.pi * u + phase[None])


def _look_rotation(view_direction: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """model2camera rotation of a camera looking along ``-view_direction`` with ``up`` pointing up (-y)."""
    z = -view_direction / view_direction.norm()
    y = -(up - (up @ z) * z)
    _require(float(y.norm()) > 1e-6, "view_up must not be parallel to view_direction")
    y = y / y.norm()
    x = torch.linalg.cross(y, z)
    return torch.stack((x, y, z), 0)  # rows: camera axes in model coordinates


def make_mano_sequence(
    hand: ManoHand,
    obj: RigidObject | None = None,
    settings: ManoSequenceSettings | None = None,
    grasp: ManoGrasp | None = None,
    grasp_settings: ManoGraspSettings | None = None,
    seed: int = 0,
) -> ManoSequence:
    """Generate a sequence of the hand holding ``obj`` (default :func:`default_grasp_object`) in front of a camera.

    Args:
        hand: MANO model without PCA (CPU; its dtype is used throughout).
        obj: the object; grasp: a precomputed grasp of ``obj`` (else :func:`make_mano_grasp` with
            ``grasp_settings``).
        settings: camera and motion; seed: phases of the motion loop.
    """
    s = settings if settings is not None else ManoSequenceSettings()
    dtype, device = hand.dtype, hand.device
    obj = (obj if obj is not None else default_grasp_object()).to(device, dtype)
    grasp = grasp if grasp is not None else make_mano_grasp(hand, obj, grasp_settings)
    T = s.num_frames
    rng = np.random.default_rng(seed)
    K = torch.tensor([[s.focal, 0.0, (s.width - 1) / 2], [0.0, s.focal, (s.height - 1) / 2], [0.0, 0.0, 1.0]],
                     dtype=dtype, device=device)
    camera = PinholeCamera(K, s.width, s.height)

    loop = _smooth_loop(T, rng.uniform(0, 2 * np.pi, 6))
    amp_t = s.translation_amplitude * np.array([1.0, 1.0, 0.5])
    centre_cam = torch.as_tensor(np.array([0.0, 0.0, s.distance]) + loop[:, :3] * amp_t, dtype=dtype, device=device)
    omega = torch.as_tensor(loop[:, 3:] * s.rotation_amplitude, dtype=dtype, device=device)
    R_base = _look_rotation(torch.tensor(s.view_direction, dtype=dtype, device=device),
                            torch.tensor(s.view_up, dtype=dtype, device=device))
    R = axis_angle_to_matrix(omega) @ R_base  # (T, 3, 3) model2camera rotation
    c_obj = torch.as_tensor(obj.center, dtype=dtype, device=device)
    c_model = transform_points(grasp.object2model[None], c_obj[None, None])[0, 0]  # object centre, model frame
    model2camera = make_transform(R, centre_cam - (R @ c_model[:, None])[..., 0])

    betas = grasp.betas.expand(T, -1).clone()
    hand_pose = grasp.hand_pose.expand(T, -1).clone()
    zero = torch.zeros(T, 3, dtype=dtype, device=device)
    J0 = hand(hand_pose=hand_pose, betas=betas, global_orient=zero, transl=zero).joints[:, 0]
    global_orient = matrix_to_axis_angle(R)
    # R (p - J0) + J0 + transl = model2camera p  ->  transl = t - J0 + R J0
    transl = model2camera[:, :3, 3] - J0 + (R @ J0[..., None])[..., 0]
    params = ManoParams(global_orient, hand_pose, betas, transl)
    check = mano_rigid_transform(hand, params)
    if not torch.allclose(check, model2camera, atol=1e-5):  # pragma: no cover - an internal consistency check
        raise InvalidValueError("MANO rigid transform does not reproduce model2camera")
    out = params.forward(hand)
    object2camera = model2camera @ grasp.object2model
    keypoints_2d = camera.project(out.keypoints)
    centre_2d = camera.project(transform_points(object2camera, c_obj.expand(T, 1, 3)))[:, 0]

    hand_mask = object_mask = None
    if s.render_masks:
        obj_verts = transform_points(object2camera, obj.verts.expand(T, -1, -1))
        verts, faces, inst = join_meshes([(out.vertices, hand.faces), (obj_verts, obj.faces)])
        # a (nearly) hard render through the soft rasterizer: its fragments are depth-sorted
        soft = Renderer()(verts.float(), faces, camera.to(dtype=torch.float32), face_instance=inst,
                          num_instances=2, sigma=_MASK_SIGMA)
        hand_mask, object_mask = soft.visible[:, 0] > 0.5, soft.visible[:, 1] > 0.5
    return ManoSequence(hand=hand, obj=obj, grasp=grasp, camera=camera, params=params.detach(),
                        object2camera=object2camera.detach(), vertices=out.vertices.detach(),
                        joints=out.joints.detach(), keypoints=out.keypoints.detach(),
                        keypoints_2d=keypoints_2d.detach(), object_centre_2d=centre_2d.detach(),
                        hand_mask=hand_mask, object_mask=object_mask)
