"""Gradients of render losses on the full Allegro hand + object against central finite differences (float64).

Object pose (6 parameters, left-multiplied se(3) increment), hand joint angles through forward kinematics, and
the camera pose (a common rigid motion of everything). The loss is piecewise smooth: the visible silhouette
jumps where hand and object surfaces swap depth order (they touch in a grasp), and fragments dropped on
overflow jump in and out; so the steps are small (1e-7) and faces_per_pixel generous.
"""

from __future__ import annotations

import torch
from test_render_scenes import OBJECT, allegro_hand, allegro_scene, object_crop, object_mesh

from handypriors_core.geometry import se3_exp, transform_points
from handypriors_core.render import RasterSettings, Renderer, RenderSettings

DT = torch.float64


def _targets(r: Renderer, s, cam):
    """Observed masks / depth from a slightly different object pose (hard render)."""
    xi = torch.tensor([0.003, -0.002, 0.004, 0.03, -0.02, 0.04], dtype=DT)
    ov = torch.as_tensor(object_mesh()[0], dtype=DT)[None]
    moved = transform_points(se3_exp(xi) @ s.object2camera, ov)
    verts = torch.cat((s.hand_verts, moved), 1)
    hard = r.hard(verts, s.faces, cam, face_instance=s.face_instance)
    obj = (hard.instance[0] == OBJECT).to(DT)
    union = hard.mask[0].to(DT)
    depth = torch.where(hard.mask[0], hard.zbuf[0], torch.zeros_like(hard.zbuf[0]))
    return obj, union, depth


def _loss(out, obj, union, depth):
    l_mask = ((out.visible[0, OBJECT] - obj) ** 2).sum() + ((out.union[0] - union) ** 2).sum()
    l_depth = (union * (out.depth[0] - depth) ** 2).sum() * 1e2
    return l_mask + l_depth


def _fd_check(fn, x0: torch.Tensor, h: float, rtol: float) -> None:
    """Autograd vs float64 central differences, component by component: ``|g_i - c_i| <= rtol |c_i| + atol``
    with ``atol = 1e-6 |c|`` (only for components that are zero both ways); a wrong small component fails.

    Measured at h = 1e-7: relative errors 1e-10 .. 4e-4 per component (the piecewise-smooth loss's jumps are
    farther than h from x0 here)."""
    assert x0.dtype == torch.float64
    x = x0.clone().requires_grad_(True)
    g, = torch.autograd.grad(fn(x), x)
    central = torch.zeros_like(x0)
    for i in range(x0.numel()):
        e = torch.zeros_like(x0)
        e.view(-1)[i] = h
        central.view(-1)[i] = (float(fn(x0 + e)) - float(fn(x0 - e))) / (2 * h)
    assert float(central.norm()) > 1e-3
    tolerance = rtol * central.abs() + 1e-6 * float(central.norm())
    bad = ((g - central).abs() > tolerance).nonzero().flatten().tolist()
    assert not bad, f"components {bad}: autograd {g.tolist()} vs central differences {central.tolist()}"


def test_object_pose_gradient_matches_finite_differences():
    s = allegro_scene(1, dtype=DT)
    cam = object_crop(s, 96)
    r = Renderer(RenderSettings(raster=RasterSettings(sigma=0.8, faces_per_pixel=64)))
    obj, union, depth = _targets(r, s, cam)
    ov = torch.as_tensor(object_mesh()[0], dtype=DT)[None]

    def loss(xi):
        moved = transform_points(se3_exp(xi) @ s.object2camera, ov)
        verts = torch.cat((s.hand_verts, moved), 1)
        out = r(verts, s.faces, cam, face_instance=s.face_instance, depth=True, gamma=1e-3)
        return _loss(out, obj, union, depth)

    _fd_check(loss, torch.zeros(6, dtype=DT), 1e-7, 2e-3)


def test_joint_angle_and_camera_pose_gradients_match_finite_differences():
    s = allegro_scene(2, dtype=DT)
    cam = object_crop(s, 96)
    r = Renderer(RenderSettings(raster=RasterSettings(sigma=0.8, faces_per_pixel=64)))
    obj, union, depth = _targets(r, s, cam)
    hand = allegro_hand(DT)
    joints = torch.tensor([5, 6, 13])  # index finger base/middle, thumb

    def loss_q(dq):
        q = s.q.index_add(0, joints, dq)
        hv, _, _ = hand.mesh(q[None])
        hand_cam = transform_points(s.hand2camera, hv)
        verts = torch.cat((hand_cam, s.object_verts), 1)
        out = r(verts, s.faces, cam, face_instance=s.face_instance, depth=True, gamma=1e-3)
        return _loss(out, obj, union, depth)

    _fd_check(loss_q, torch.zeros(3, dtype=DT), 1e-7, 2e-3)

    def loss_cam(xi):  # camera moves: every vertex gets the inverse motion
        verts = transform_points(se3_exp(xi), s.verts)
        out = r(verts, s.faces, cam, face_instance=s.face_instance, depth=True, gamma=1e-3)
        return _loss(out, obj, union, depth)

    _fd_check(loss_cam, torch.zeros(6, dtype=DT), 1e-7, 2e-3)
