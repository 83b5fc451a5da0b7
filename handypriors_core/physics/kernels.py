"""Warp kernels of the physics module (no torch here; :mod:`.warp_bridge` launches them).

The kernels are the non-differentiable phase of the signed-distance query: a BVH search for the closest face
and its barycentric coordinates, plus the inside/outside sign. They are compiled with
``enable_backward=False``; gradients are formed in torch from the returned face and barycentrics (see
:mod:`.sdf`).
"""

from __future__ import annotations

import warp as wp

#: ``sign_method`` codes understood by :func:`closest_face_kernel`.
SIGN_WINDING_NUMBER = 0
SIGN_PSEUDO_NORMAL = 1


@wp.kernel(enable_backward=False)
def closest_face_kernel(
    mesh_ids: wp.array(dtype=wp.uint64),
    mesh_lowers: wp.array(dtype=wp.vec3),
    mesh_uppers: wp.array(dtype=wp.vec3),
    points: wp.array(dtype=wp.vec3),
    points_per_mesh: int,
    offset: int,
    max_dist: float,
    sign_method: int,
    accuracy: float,
    threshold: float,
    known_outside: wp.array(dtype=wp.int32),
    # outputs
    face: wp.array(dtype=wp.int32),
    bary: wp.array(dtype=wp.vec2),
    sign: wp.array(dtype=wp.float32),
):
    """Closest face, barycentrics ``(u, v)`` and sign (-1 inside, +1 outside) of ``points[offset + tid]``.

    Point ``i`` is queried against mesh ``m = mesh_ids[i // points_per_mesh]``. The closest point is
    ``u * p0 + v * p1 + (1 - u - v) * p2`` of the face's vertices. Points with no face within ``max_dist``
    get ``face = -1`` and sign +1. Points outside the mesh's bounding box ``[mesh_lowers[m], mesh_uppers[m]]``
    are outside the mesh: they skip the (costly) sign test, and so do the points the caller knows to lie outside
    (``known_outside[i] != 0``, e.g. outside the mesh's convex hull; an empty ``known_outside`` marks none).
    """
    i = offset + wp.tid()
    m = i // points_per_mesh
    mesh = mesh_ids[m]
    p = points[i]
    lo = mesh_lowers[m]
    hi = mesh_uppers[m]
    in_box = p[0] >= lo[0] and p[1] >= lo[1] and p[2] >= lo[2] and p[0] <= hi[0] and p[1] <= hi[1] and p[2] <= hi[2]
    if known_outside.shape[0] > 0:  # noqa: SIM102 - warp evaluates both sides of an `and`: no read of an empty array
        if known_outside[i] != 0:
            in_box = False
    if not in_box:
        q = wp.mesh_query_point_no_sign(mesh, p, max_dist)
        q.sign = 1.0
    elif sign_method == 0:
        q = wp.mesh_query_point_sign_winding_number(mesh, p, max_dist, accuracy, threshold)
    else:
        q = wp.mesh_query_point_sign_normal(mesh, p, max_dist)
    if q.result:
        face[i] = q.face
        bary[i] = wp.vec2(q.u, q.v)
        sign[i] = wp.where(q.sign < 0.0, -1.0, 1.0)
    else:
        face[i] = -1
        bary[i] = wp.vec2(0.0, 0.0)
        sign[i] = 1.0
