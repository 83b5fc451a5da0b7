"""Small synthetic hand-object frames for the segmentation / initialisation tests and benchmarks.

A frame shows the Allegro hand (URDF, forward kinematics) holding a textured primitive object in front of a
cluttered background (random coloured rectangles at random depths, a colour gradient and sensor noise), seen by
a pinhole camera looking at the palm. Images come from z-buffer renders (the scene renderer's
:meth:`~handypriors_core.render.renderer.Renderer.hard`), so the ground-truth masks are exact.

Everything here is ground truth for *scoring*: a :class:`SyntheticView` keeps the true object pose and masks
apart from the :class:`~handypriors_core.io.frame.Frame` it carries (whose ``object_mask`` is None), so code
under test only sees what a robot records (RGB, optional depth, joint angles, hand2camera, intrinsics).

    scene = make_scene("box")
    view = random_view(scene, torch.Generator().manual_seed(0))
    frame, gt_mask = view.frame, view.object_mask
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InvalidValueError
from ..estimation.scene import HAND, OBJECT, HandObjectScene, PosedHand
from ..geometry.camera import PinholeCamera
from ..geometry.rotations import axis_angle_to_matrix
from ..geometry.transforms import invert_transform, make_transform, transform_points
from ..io.frame import Frame
from ..models import RigidObject, URDFHand, allegro_urdf

__all__ = [
    "SyntheticView",
    "clutter_background",
    "make_camera",
    "make_object",
    "make_scene",
    "move_object",
    "palm_view_hand2camera",
    "random_view",
    "render_view",
]

#: Flexion joints of the Allegro fingers (index, middle, ring: joints 1-3, 5-7, 9-11).
_FLEX = [1, 2, 3, 5, 6, 7, 9, 10, 11]
_HAND_CACHE: dict = {}


@dataclass(frozen=True)
class SyntheticView:
    """One generated frame and its ground truth (the truth is for scoring only).

    Attributes:
        frame: what the tracker sees (``object_mask`` is None).
        object2camera: ``(4, 4)`` float64 true object pose.
        object_mask: ``(H, W)`` float {0, 1} true *visible* object mask (hand occlusion applied).
        hand_mask: ``(H, W)`` float {0, 1} visible hand pixels.
        object_depth: ``(H, W)`` float32 rendered object depth [m], 0 off the object.
        background: ``(rgb (H, W, 3), depth (H, W))`` the background used; palette: ``(3, 3)`` object colours.
    """

    frame: Frame
    object2camera: torch.Tensor
    object_mask: torch.Tensor
    hand_mask: torch.Tensor
    object_depth: torch.Tensor
    background: tuple[torch.Tensor, torch.Tensor]
    palette: torch.Tensor


def make_camera(width: int = 160, height: int = 120, fov_x_deg: float = 56.0) -> PinholeCamera:
    """Pinhole camera with square pixels and the principal point at the image centre."""
    f = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    K = torch.tensor([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    return PinholeCamera(K, width, height)


def make_object(kind: str = "box") -> RigidObject:
    """A hand-sized primitive: ``"box"`` (6 x 4 x 10 cm), ``"cylinder"`` (r 3 cm, h 9 cm) or ``"flat_box"``."""
    if kind == "box":
        return RigidObject.box([0.06, 0.04, 0.10], n_samples=800)
    if kind == "flat_box":
        return RigidObject.box([0.08, 0.025, 0.06], n_samples=800)
    if kind == "cylinder":
        return RigidObject.cylinder(0.03, 0.09, sections=24, n_samples=800)
    raise InvalidValueError(f"unknown object kind {kind!r} (box, flat_box, cylinder)")


def make_scene(kind: str = "box", device: str | torch.device = "cpu") -> HandObjectScene:
    """Allegro hand (shipped URDF, cached) + :func:`make_object` in a :class:`HandObjectScene`."""
    if "hand" not in _HAND_CACHE:
        _HAND_CACHE["hand"] = URDFHand.from_urdf(allegro_urdf())
    return HandObjectScene(_HAND_CACHE["hand"], make_object(kind), device=device)


def palm_view_hand2camera(distance: float, tilt: torch.Tensor, roll: float) -> torch.Tensor:
    """``hand2camera (4, 4)`` of a camera ``distance`` [m] in front of the palm (hand +x), fingers pointing up.

    ``tilt (3,)`` [rad] rotates the viewing direction (axis-angle in the hand frame), ``roll`` [rad] about it.
    """
    # camera axes in the hand frame: x_c = +y_h, y_c = -z_h (fingers up in the image), z_c = -x_h
    R_c2h = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    R_c2h = axis_angle_to_matrix(tilt.double()) @ R_c2h @ axis_angle_to_matrix(
        torch.tensor([0.0, 0.0, roll], dtype=torch.float64))
    target = torch.tensor([0.05, 0.0, 0.06], dtype=torch.float64)  # grasp region in front of the fingers
    origin = target - distance * R_c2h[:, 2]
    return invert_transform(make_transform(R_c2h, origin))


def clutter_background(height: int, width: int, generator: torch.Generator, rectangles: int = 30
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluttered background: ``rgb (H, W, 3)`` float in [0, 1] and ``depth (H, W)`` [m].

    A colour gradient on a wall 0.9-1.2 m away, with ``rectangles`` random axis-aligned coloured rectangles
    (some textured with stripes) at random depths between 0.6 m and the wall.
    """
    g = generator
    ys = torch.linspace(0, 1, height)[:, None, None]
    xs = torch.linspace(0, 1, width)[None, :, None]
    c0, c1, c2 = torch.rand(3, 3, generator=g)
    rgb = (c0 + (c1 - c0) * xs + (c2 - c0) * ys).expand(height, width, 3).clone()
    depth = torch.full((height, width), 0.9 + 0.3 * float(torch.rand((), generator=g)))
    for _ in range(rectangles):  # a handful of rectangles, not pixels
        w = int(torch.randint(width // 10, width // 2, (), generator=g))
        h = int(torch.randint(height // 10, height // 2, (), generator=g))
        x0 = int(torch.randint(-w // 2, width - w // 2, (), generator=g))
        y0 = int(torch.randint(-h // 2, height - h // 2, (), generator=g))
        sx, sy = slice(max(0, x0), max(0, x0 + w)), slice(max(0, y0), max(0, y0 + h))
        colour = torch.rand(3, generator=g)
        if float(torch.rand((), generator=g)) < 0.3:  # striped
            other = torch.rand(3, generator=g)
            period = int(torch.randint(2, 6, (), generator=g))
            stripes = ((torch.arange(width)[None, :] // period) % 2).float()[..., None]
            patch = colour + (other - colour) * stripes
            rgb[sy, sx] = patch.expand(height, width, 3)[sy, sx]
        else:
            rgb[sy, sx] = colour
        depth[sy, sx] = 0.6 + 0.5 * float(torch.rand((), generator=g))
    return rgb, depth


def _object_texture(points_obj: torch.Tensor, palette: torch.Tensor, cell: float) -> torch.Tensor:
    """Procedural texture of object-frame points ``(..., 3)``: a 3D checkerboard of 2 colours with a third colour
    in a band (a printed label), ``palette (3, 3)``."""
    k = torch.floor(points_obj / cell).long().sum(-1) % 2
    colour = palette[k]
    band = (points_obj[..., 2].abs() < 1.2 * cell)
    return torch.where(band[..., None], palette[2].expand_as(colour), colour)


def render_view(scene: HandObjectScene, camera: PinholeCamera, joint_angles: torch.Tensor,
                hand2camera: torch.Tensor, object2camera: torch.Tensor, background: tuple[torch.Tensor, torch.Tensor],
                palette: torch.Tensor, generator: torch.Generator, index: int = 0, with_depth: bool = True,
                noise: float = 0.02, depth_noise: float = 0.002, depth_dropout: float = 0.02) -> SyntheticView:
    """Render the hand + textured object over ``background`` into a :class:`SyntheticView`.

    Shading is Lambertian with a head light; the hand is dark grey with lighter fingertips. RGB noise is
    Gaussian (``noise`` in [0, 1] units), depth gets Gaussian noise [m] and random dropouts (NaN).
    """
    device = scene.device
    hand = scene.pose_hand(joint_angles.float(), hand2camera.float())
    pose = object2camera.to(device, torch.float32)[None]
    verts, faces, inst = scene.scene_mesh(pose, hand)
    cam = camera.to(device, torch.float32)
    with torch.no_grad():
        out = scene.renderer.hard(verts, faces, cam, face_instance=inst)
    face = out.face[0].clamp_min(0)
    tri = verts[0][faces[face]]  # (H, W, 3, 3) camera-frame triangle corners
    p_cam = (out.bary[0][..., None] * tri).sum(-2)
    normal = torch.linalg.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    view_dir = p_cam / p_cam.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    shade = 0.35 + 0.65 * (normal * view_dir).sum(-1).abs()
    p_obj = transform_points(invert_transform(pose), p_cam.reshape(1, -1, 3))[0].reshape(p_cam.shape)
    obj_colour = _object_texture(p_obj, palette.to(device), 0.02)
    Vh = hand.verts.shape[1]
    tip = (hand.verts[0][faces[face][..., 0].clamp(max=Vh - 1)] - hand.fingertip_centres[0][:, None, None, :]
           ).norm(dim=-1).min(0).values < 0.015
    hand_colour = torch.where(tip[..., None], torch.tensor([0.75, 0.75, 0.72], device=device),
                              torch.tensor([0.18, 0.18, 0.2], device=device))
    is_obj = out.instance[0] == OBJECT
    is_hand = out.instance[0] == HAND
    colour = torch.where(is_obj[..., None], obj_colour, hand_colour) * shade[..., None]
    bg_rgb, bg_depth = (b.to(device) for b in background)
    rgb = torch.where(out.mask[0][..., None], colour, bg_rgb)
    rgb = rgb + noise * torch.randn(rgb.shape, generator=generator).to(device)
    rgb8 = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    depth = None
    if with_depth:
        d = torch.where(out.mask[0], out.zbuf[0], bg_depth)
        d = d + depth_noise * torch.randn(d.shape, generator=generator).to(device)
        drop = torch.rand(d.shape, generator=generator).to(device) < depth_dropout
        depth = torch.where(drop | (d <= 0), torch.full_like(d, float("nan")), d).float().cpu()
    frame = Frame(index=index, stamp=0.033 * index, rgb=rgb8, camera=camera, joint_angles=joint_angles.float().cpu(),
                  hand2camera=hand2camera.float().cpu(), depth=depth)
    return SyntheticView(frame=frame, object2camera=object2camera.double().cpu(), object_mask=is_obj.float().cpu(),
                         hand_mask=is_hand.float().cpu(),
                         object_depth=torch.where(is_obj, out.zbuf[0], torch.zeros_like(out.zbuf[0])).cpu(),
                         background=background, palette=palette)


def _penetrates(scene: HandObjectScene, hand: PosedHand, object2camera: torch.Tensor, tolerance: float) -> bool:
    pts = torch.cat((hand.surface_points, hand.contact_points, hand.verts), 1)
    d = scene.object_sdf.signed_distance(pts, object2camera[None].to(pts.device, torch.float32)).distance
    return bool((d < -tolerance).any())


def random_view(scene: HandObjectScene, generator: torch.Generator, camera: PinholeCamera | None = None,
                index: int = 0, with_depth: bool = True, min_visible: float = 0.5, min_pixels: int = 150,
                max_tries: int = 200, **render_kwargs) -> SyntheticView:
    """A random grasp-like configuration rendered by :func:`render_view`.

    The fingers are flexed at random, the camera looks at the palm from 0.30-0.38 m with a random tilt and roll,
    and the object sits in front of the palm with a uniformly random rotation. Configurations where the hand
    penetrates the object (> 1 mm), the object shows fewer than ``min_pixels`` pixels or less than
    ``min_visible`` of its silhouette is visible are rejected.
    """
    g = generator
    camera = camera if camera is not None else make_camera()
    J = len(scene.hand.joint_names) if hasattr(scene.hand, "joint_names") else 16
    for _ in range(max_tries):
        q = torch.zeros(J)
        q[_FLEX] = 0.6 * torch.rand(len(_FLEX), generator=g)
        q[12] = 0.4 + 0.6 * float(torch.rand((), generator=g))
        q[13] = 0.3 * float(torch.rand((), generator=g))
        tilt = 0.35 * (2 * torch.rand(3, generator=g) - 1)
        roll = 0.6 * (2 * float(torch.rand((), generator=g)) - 1)
        distance = 0.30 + 0.08 * float(torch.rand((), generator=g))
        hand2camera = palm_view_hand2camera(distance, tilt, roll)
        axis_angle = torch.randn(3, generator=g, dtype=torch.float64)
        axis_angle = axis_angle / axis_angle.norm() * math.pi * float(torch.rand((), generator=g)) ** (1 / 3)
        R = axis_angle_to_matrix(axis_angle)
        centre = torch.tensor([0.065, 0.0, 0.06], dtype=torch.float64) + torch.tensor([0.03, 0.03, 0.03],
                                                                                       dtype=torch.float64) * (
            2 * torch.rand(3, generator=g, dtype=torch.float64) - 1)
        object2hand = make_transform(R, centre)
        object2camera = hand2camera @ object2hand
        hand = scene.pose_hand(q, hand2camera.float())
        if _penetrates(scene, hand, object2camera, 1e-3):
            continue
        background = clutter_background(camera.height, camera.width, g)
        palette = torch.rand(3, 3, generator=g) * 0.8 + 0.1
        view = render_view(scene, camera, q, hand2camera, object2camera, background, palette, g, index=index,
                           with_depth=with_depth, **render_kwargs)
        full = _object_pixels(scene, camera, object2camera)
        visible = float(view.object_mask.sum())
        if visible >= min_pixels and visible >= min_visible * max(full, 1.0):
            return view
    raise InvalidValueError(f"no valid random view in {max_tries} tries")


def _object_pixels(scene: HandObjectScene, camera: PinholeCamera, object2camera: torch.Tensor) -> float:
    """Number of pixels of the object's full (unoccluded) silhouette."""
    verts = scene.object_verts(object2camera[None].to(scene.device, torch.float32))
    with torch.no_grad():
        out = scene.renderer.hard(verts, scene.object_faces, camera.to(scene.device, torch.float32))
    return float(out.mask.sum())


def move_object(scene: HandObjectScene, view: SyntheticView, object2camera: torch.Tensor,
                generator: torch.Generator, index: int, **render_kwargs) -> SyntheticView:
    """Re-render ``view`` (same hand, background and object colours) with the object at ``object2camera``."""
    f = view.frame
    return render_view(scene, f.camera, f.joint_angles, f.hand2camera, object2camera, view.background, view.palette,
                       generator, index=index, with_depth=f.depth is not None, **render_kwargs)
