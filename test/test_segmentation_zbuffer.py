"""The z-buffer helper keeps the nearest surface per pixel, whatever the face order."""

from __future__ import annotations

import torch

from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.models import RigidObject
from handypriors_core.segmentation.zbuffer import zbuffer

S = 24


def _camera() -> PinholeCamera:
    return PinholeCamera(torch.tensor([[30.0, 0.0, (S - 1) / 2], [0.0, 30.0, (S - 1) / 2], [0.0, 0.0, 1.0]]), S, S)


def _square(z: float, half: float, shift: float = 0.0, fine: int = 6):
    """A square at depth ``z`` [m] split into many small triangles (so a pixel is deep inside a far triangle while
    only near the edge of a near one)."""
    t = torch.linspace(-half, half, fine + 1)
    ys, xs = torch.meshgrid(t, t, indexing="ij")
    verts = torch.stack((xs.flatten() + shift, ys.flatten(), torch.full(((fine + 1) ** 2,), z)), -1)
    idx = torch.arange((fine + 1) ** 2).view(fine + 1, fine + 1)
    a, b, c, d = idx[:-1, :-1].flatten(), idx[:-1, 1:].flatten(), idx[1:, :-1].flatten(), idx[1:, 1:].flatten()
    faces = torch.cat((torch.stack((a, b, d), -1), torch.stack((a, d, c), -1)))
    return verts, faces


def test_nearest_surface_wins_in_any_order():
    near_v, near_f = _square(0.5, 0.1, fine=1)  # two big triangles
    far_v, far_f = _square(0.8, 0.5, fine=12)  # many small triangles behind, covering the image
    for first, second in (((near_v, near_f), (far_v, far_f)), ((far_v, far_f), (near_v, near_f))):
        verts = torch.cat((first[0], second[0]))[None]
        faces = torch.cat((first[1], second[1] + first[0].shape[0]))
        inst = torch.cat((torch.zeros(first[1].shape[0], dtype=torch.long),
                          torch.ones(second[1].shape[0], dtype=torch.long)))
        out = zbuffer(verts, faces, _camera(), face_instance=inst, layers=8)
        near_id = 0 if first[0] is near_v else 1
        # pixel centres well inside the near square's projection (|x| < 0.1 * 30 / 0.5 = 6 px from the centre)
        core = slice(S // 2 - 4, S // 2 + 4)
        assert bool((out.instance[0, core, core] == near_id).all())
        assert torch.allclose(out.zbuf[0, core, core], torch.full((8, 8), 0.5), atol=1e-5)
        # around it only the far square: depth 0.8
        assert torch.allclose(out.zbuf[0, 0, :], torch.full((S,), 0.8), atol=1e-5)
        assert bool(out.mask.all())


def test_box_front_face_depth_and_background():
    box = RigidObject.box([0.1, 0.1, 0.1])
    verts = box.verts + torch.tensor([0.0, 0.0, 1.0])
    out = zbuffer(verts[None], box.faces, _camera())
    core = slice(S // 2 - 1, S // 2 + 1)
    assert torch.allclose(out.zbuf[0, core, core], torch.full((2, 2), 0.95), atol=1e-5)  # the near face
    assert int(out.mask[0].sum()) < S * S and float(out.zbuf[0][~out.mask[0]].abs().max()) == 0.0
    assert bool((out.instance[0][~out.mask[0]] == -1).all()) and bool((out.face[0][~out.mask[0]] == -1).all())
