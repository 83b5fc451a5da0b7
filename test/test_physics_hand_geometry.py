"""Reverse query: points against a posed (refitted) hand mesh; gradients to the hand vertices."""

import pytest
import torch
import trimesh

from handypriors_core.errors import ShapeError
from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform, se3_exp, transform_points
from handypriors_core.physics import HandGeometry, ObjectSDF

F64 = torch.float64


def _box_sd(p: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    q = p.abs() - half
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


def _finger(half=(0.005, 0.005, 0.02)):
    mesh = trimesh.creation.box(extents=[2 * h for h in half])
    return (torch.as_tensor(mesh.vertices, dtype=F64), torch.as_tensor(mesh.faces), torch.tensor(half, dtype=F64))


def test_refit_follows_moving_mesh_per_batch_element():
    verts, faces, half = _finger()
    hand = HandGeometry(faces)
    gen = torch.Generator().manual_seed(0)
    points_local = (torch.rand(2, 400, 3, generator=gen, dtype=F64) * 2 - 1) * half * 2
    for step in range(3):  # the same HandGeometry, new poses each call (refit, no rebuild)
        T = se3_exp(torch.randn(2, 6, generator=gen, dtype=F64) * 0.3)
        verts_posed = transform_points(T, verts.expand(2, -1, -1))
        points = transform_points(T, points_local)
        result = hand.signed_distance(points, verts_posed)
        expected = _box_sd(points_local, half)
        assert (result.distance - expected).abs().max() < 1e-6, step
        assert torch.equal(hand.contains(points, verts_posed), expected < 0)


def test_alternating_batch_sizes_use_fresh_vertices():
    verts, faces, half = _finger()
    hand = HandGeometry(faces)
    gen = torch.Generator().manual_seed(1)
    points_local = (torch.rand(3, 200, 3, generator=gen, dtype=F64) * 2 - 1) * half * 2
    for step in range(4):
        batch = (1, 3)[step % 2]
        T = se3_exp(torch.randn(batch, 6, generator=gen, dtype=F64) * 0.3)
        result = hand.signed_distance(transform_points(T, points_local[:batch]),
                                      transform_points(T, verts.expand(batch, -1, -1)))
        assert (result.distance - _box_sd(points_local[:batch], half)).abs().max() < 1e-6, step
    assert len(hand._meshes) == 2


def test_reverse_query_catches_object_corner_inside_finger():
    """An object corner poking into a finger: no finger vertex is inside the object, but the reverse query sees it."""
    verts, faces, _ = _finger()
    block = trimesh.creation.box(extents=(0.04, 0.04, 0.04))
    object_sdf = ObjectSDF.from_trimesh(block)
    # Object: a block turned so its corner (+x+y+z) points along +x, 2 mm through the finger's -x face.
    diagonal = torch.tensor([1.0, 1.0, 1.0], dtype=F64) / 3 ** 0.5
    axis = torch.linalg.cross(diagonal, torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    rotation = axis_angle_to_matrix(axis / axis.norm() * torch.acos(diagonal[0]))
    corner_cam = torch.tensor([-0.005 + 0.002, 0.0, 0.001], dtype=F64)
    object2camera = make_transform(rotation, corner_cam - rotation @ torch.full((3,), 0.02, dtype=F64))[None]
    hand_verts = verts[None]
    forward = object_sdf.signed_distance(hand_verts, object2camera).distance
    assert (forward > 0).all()  # hand vertices all outside the object
    object_points = transform_points(object2camera, torch.as_tensor(block.vertices, dtype=F64)[None])
    reverse = HandGeometry(faces).signed_distance(object_points, hand_verts).distance
    assert reverse.min() == pytest.approx(-0.002, abs=1e-7)  # the corner: 2 mm deep behind the -x face
    assert (reverse < 0).sum() == 1


def test_gradcheck_wrt_hand_vertices_and_points_float64():
    verts, faces, _ = _finger()
    hand = HandGeometry(faces)
    points = torch.tensor([[[0.008, 0.001, 0.002], [0.007, 0.008, -0.004], [0.007, 0.006, 0.023],
                            [0.002, -0.001, 0.003]]], dtype=F64, requires_grad=True)
    verts = verts[None].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, v: hand.signed_distance(p, v).distance, (points, verts),
                                    eps=1e-6, atol=1e-6)


def test_shape_errors():
    verts, faces, _ = _finger()
    hand = HandGeometry(faces)
    with pytest.raises(ShapeError, match="batch size"):
        hand.signed_distance(torch.zeros(2, 3, 3, dtype=F64), verts[None])
    with pytest.raises(ShapeError, match="verts"):
        hand.signed_distance(torch.zeros(1, 3, 3, dtype=F64), verts)


def test_allegro_hand_against_object_at_fingertip():
    """Integration with the shipped Allegro URDF: an 8 mm ball inside the 12 mm index fingertip sphere."""
    from handypriors_core.models import RigidObject, URDFHand, allegro_urdf
    from handypriors_core.physics import interpenetration_volume
    from handypriors_core.priors import penetration_loss

    hand = URDFHand.from_urdf(allegro_urdf()).to(dtype=F64)
    q = hand.default_joint_angles().reshape(1, -1).clone().requires_grad_(True)
    verts, faces, _ = hand.mesh(q)
    ball = RigidObject.sphere(0.008, subdivisions=3, dtype=F64)
    tip = hand.fingertips(q)[0, 0].detach()
    object2camera = make_transform(torch.eye(3, dtype=F64), tip)[None]  # "camera" = hand frame here
    samples = transform_points(object2camera, ball.samples[None])
    reverse = HandGeometry(faces).signed_distance(samples, verts).distance
    assert (reverse < 0).all()  # every object sample is inside the fingertip
    # The ball lies inside the fingertip: the intersection is the whole ball.
    volume = interpenetration_volume(ObjectSDF.from_rigid_object(ball), object2camera, verts.detach(), faces)
    ball_volume = trimesh.Trimesh(ball.verts.numpy(), ball.faces.numpy()).volume * 1e6
    assert volume.item() == pytest.approx(ball_volume, rel=0.05)
    # The reverse penetration term reaches the joint angles.
    (grad,) = torch.autograd.grad(penetration_loss(reverse), q)
    assert grad.abs().sum() > 0
    # Moved 20 cm away from the hand: no overlap.
    far = object2camera.clone()
    far[0, :3, 3] += torch.tensor([0.2, 0.0, 0.0], dtype=F64)
    assert interpenetration_volume(ObjectSDF.from_rigid_object(ball), far, verts.detach(), faces).item() == 0.0
