"""Shared pieces of the soft rasterizer's warp kernels: the scalar type, the screen-space geometry of one face at
one pixel (``cross2``, ``segment_t``, ``inverse_squares``, ``closest``) and the per-face record ``FaceData``.

Geometry of one face at one pixel (shared by every kernel and by :mod:`.dense_reference`):

* ``v0, v1, v2`` screen positions [px] (pixel ``(x, y)`` has its centre at ``(x, y)``), ``w_k = 1 / z_k``
  inverse vertex depths [1/m].
* Edge ``k`` is the one opposite vertex ``k`` (from ``v[k+1]`` to ``v[k+2]``); ``A_k = cross(v[k+2] - v[k+1],
  p - v[k+1])``, ``area2 = A_0 + A_1 + A_2``; screen barycentrics ``l_k = A_k / area2``.
* Inside (all ``l_k >= 0``, non-degenerate face): ``d`` = distance to the nearest edge line, ``dist = +d^2``,
  barycentrics ``l``. Outside: ``d`` = distance to the closest point ``q`` of the triangle (on its nearest
  edge, parameter ``t`` from ``v[k+1]``), ``dist = -d^2``, barycentrics of ``q`` (``1 - t``, ``t``, 0).
* Depth ``z = 1 / sum(l_k w_k)`` [m] (perspective-correct), perspective barycentrics ``b_k = l_k w_k z``.

Signed squared distance ``dist`` is in px^2, positive inside the triangle.
"""

from types import SimpleNamespace

import torch
import warp as wp

wp.config.quiet = True

__all__ = ["DEGENERATE_EPS", "face_struct", "make_geometry", "wp_scalar"]

#: Faces whose doubled screen area (or an edge length) is below this [px^2 / px] have no interior.
DEGENERATE_EPS = 1e-12


def wp_scalar(dtype: torch.dtype):
    """The warp scalar type of a torch dtype (float32 or float64)."""
    if dtype == torch.float32:
        return wp.float32
    if dtype == torch.float64:
        return wp.float64
    raise TypeError(f"render kernels support float32 and float64; got {dtype}")


def make_geometry(scalar):
    """warp functions for the screen-space geometry of one face (closure over the scalar type)."""
    vec2 = wp.types.vector(2, scalar)
    vec3 = wp.types.vector(3, scalar)
    vec4 = wp.types.vector(4, scalar)
    zero = scalar(0.0)
    one = scalar(1.0)
    tiny = scalar(DEGENERATE_EPS)

    @wp.func
    def cross2(a: vec2, b: vec2) -> scalar:
        return a[0] * b[1] - a[1] * b[0]

    @wp.func
    def segment_t(p: vec2, a: vec2, c: vec2) -> scalar:
        """Parameter in [0, 1] of the point of segment a->c closest to p."""
        e = c - a
        ee = wp.dot(e, e)
        t = zero
        if ee > tiny:
            t = wp.clamp(wp.dot(p - a, e) / ee, zero, one)
        return t

    @wp.func
    def inverse_squares(a: scalar, b: scalar, c: scalar) -> vec3:
        """``(1/a^2, 1/b^2, 1/c^2)`` with 0 for lengths not above the degeneracy threshold."""
        out = vec3(zero, zero, zero)
        if a > tiny:
            out[0] = one / (a * a)
        if b > tiny:
            out[1] = one / (b * b)
        if c > tiny:
            out[2] = one / (c * c)
        return out

    @wp.func
    def closest(p: vec2, v0: vec2, v1: vec2, v2: vec2, ev: vec3, il2: vec3) -> vec4:
        """Closest point of triangle (v0, v1, v2) to p outside it: (l0, l1, l2, squared distance).

        ``ev`` = signed distances of p to the edge lines (+ inside; all < 0 marks a degenerate face, for which
        the nearest of the three segments is searched), ``il2`` = 1 / squared edge lengths (0 if degenerate).
        The point lies on one of the (one or two) edges whose lines separate p.
        """
        n0 = ev[0] < zero
        n1 = ev[1] < zero
        n2 = ev[2] < zero
        l0 = zero
        l1 = zero
        l2 = zero
        d2 = zero
        if n0 and n1 and n2:
            # degenerate face: nearest of the three segments (edge k from v[k+1] to v[k+2])
            t0 = segment_t(p, v1, v2)
            q0 = v1 + t0 * (v2 - v1)
            d0 = wp.dot(p - q0, p - q0)
            t1 = segment_t(p, v2, v0)
            q1 = v2 + t1 * (v0 - v2)
            dd1 = wp.dot(p - q1, p - q1)
            t2 = segment_t(p, v0, v1)
            q2 = v0 + t2 * (v1 - v0)
            dd2 = wp.dot(p - q2, p - q2)
            d2 = d0
            l1 = one - t0
            l2 = t0
            if dd1 < d2:
                d2 = dd1
                l0 = t1
                l1 = zero
                l2 = one - t1
            if dd2 < d2:
                d2 = dd2
                l0 = one - t2
                l1 = t2
                l2 = zero
        else:
            # the closest point lies on an edge whose line separates p (one or two of them); two
            # separating edges share a vertex, and with an obtuse angle there the point may lie inside either
            d2 = scalar(1e30)
            if n0:
                t = wp.clamp(wp.dot(p - v1, v2 - v1) * il2[0], zero, one)
                q = v1 + t * (v2 - v1)
                d2 = wp.dot(p - q, p - q)
                l1 = one - t
                l2 = t
            if n1:
                t = wp.clamp(wp.dot(p - v2, v0 - v2) * il2[1], zero, one)
                q = v2 + t * (v0 - v2)
                dd = wp.dot(p - q, p - q)
                if dd < d2:
                    d2 = dd
                    l0 = t
                    l1 = zero
                    l2 = one - t
            if n2:
                t = wp.clamp(wp.dot(p - v0, v1 - v0) * il2[2], zero, one)
                q = v0 + t * (v1 - v0)
                dd = wp.dot(p - q, p - q)
                if dd < d2:
                    d2 = dd
                    l0 = one - t
                    l1 = t
                    l2 = zero
        return vec4(l0, l1, l2, d2)

    return SimpleNamespace(vec2=vec2, cross2=cross2, segment_t=segment_t, closest=closest,
                           inverse_squares=inverse_squares)



_FACE_STRUCTS: dict = {}


def face_struct(scalar):
    """Per-face screen data (one struct per face: the rasterizer touches one contiguous record)."""
    if scalar not in _FACE_STRUCTS:
        vec3 = wp.types.vector(3, scalar)
        vec4 = wp.types.vector(4, scalar)
        mat33 = wp.types.matrix((3, 3), scalar)
        mat32 = wp.types.matrix((3, 2), scalar)

        class FaceData:
            bbox: vec4  # xmin, xmax, ymin, ymax incl. margin [px]; empty (xmin > xmax) when undrawn
            edge: mat33  # rows (nx, ny, c): signed distance to edge line k [px], + inside
            scale: vec3  # |edge_k| / |area2| (screen barycentric = edge distance * scale); 0 if degenerate
            w: vec3  # inverse vertex depths [1/m]
            xy: mat32  # rows: screen vertices [px]
            il2: vec3  # 1 / |edge_k|^2 (0 for zero-length edges)
            inst: wp.int32  # instance id (decides which fragments to keep when a pixel overflows)

        FaceData.__name__ = f"FaceData_{scalar.__name__}"
        FaceData.__qualname__ = FaceData.__name__
        _FACE_STRUCTS[scalar] = wp.struct(FaceData)
    return _FACE_STRUCTS[scalar]
