"""Binning kernels of the soft rasterizer: ``face_setup`` (per face: screen box grown by the blur margin,
edge-line equations, tile range, one :func:`~.kernel_geometry.face_struct` record) -> ``bin_count`` / scan /
``bin_fill`` (per-tile face lists, exact sizes). Registered in the per-scalar-type warp module that
:func:`.warp_kernels.common_kernels` builds (with the shading kernels).
"""

from types import SimpleNamespace

import warp as wp

from .kernel_geometry import DEGENERATE_EPS, face_struct, make_geometry

__all__ = ["make_binning"]


def make_binning(scalar, module: str) -> SimpleNamespace:
    """``face_setup``, ``bin_count``, ``bin_fill`` for warp scalar type ``scalar``, in warp module ``module``."""
    vec2 = wp.types.vector(2, scalar)
    vec3 = wp.types.vector(3, scalar)
    vec4 = wp.types.vector(4, scalar)
    mat33 = wp.types.matrix((3, 3), scalar)
    mat32 = wp.types.matrix((3, 2), scalar)
    geo = make_geometry(scalar)
    cross2 = geo.cross2
    inverse_squares = geo.inverse_squares
    zero = scalar(0.0)
    one = scalar(1.0)
    tiny = scalar(DEGENERATE_EPS)
    FaceData = face_struct(scalar)

    @wp.kernel(enable_backward=False, module=module)
    def face_setup(
        verts2d: wp.array(dtype=vec2),  # (B*V,) screen positions [px]
        inv_depth: wp.array(dtype=scalar),  # (B*V,) 1/z [1/m]
        vert_ok: wp.array(dtype=wp.int32),  # (B*V,) 1 = drawable vertex
        faces: wp.array(dtype=wp.vec3i),  # (F,)
        face_instance: wp.array(dtype=wp.int32),  # (F,)
        n_verts: int,
        n_faces: int,
        margin: scalar,  # blur margin [px]
        width: int,
        height: int,
        tile: int,
        # outputs
        face_data: wp.array(dtype=FaceData),  # (B*F,)
        face_tiles: wp.array(dtype=wp.vec4i),  # (B*F,) tx0, tx1, ty0, ty1 (empty when tx0 > tx1)
    ):
        bf = wp.tid()
        b = bf / n_faces
        f = bf - b * n_faces
        ids = faces[f]
        g0 = b * n_verts + ids[0]
        g1 = b * n_verts + ids[1]
        g2 = b * n_verts + ids[2]
        face_tiles[bf] = wp.vec4i(0, -1, 0, -1)
        fd = FaceData()
        fd.bbox = vec4(one, zero, one, zero)
        fd.inst = face_instance[f] & 7

        if vert_ok[g0] == 0 or vert_ok[g1] == 0 or vert_ok[g2] == 0:
            face_data[bf] = fd
            return
        v0 = verts2d[g0]
        v1 = verts2d[g1]
        v2 = verts2d[g2]
        fd.xy = mat32(v0[0], v0[1], v1[0], v1[1], v2[0], v2[1])
        fd.w = vec3(inv_depth[g0], inv_depth[g1], inv_depth[g2])
        area2 = cross2(v1 - v0, v2 - v0)
        e0 = v2 - v1
        e1 = v0 - v2
        e2 = v1 - v0
        l0 = wp.length(e0)
        l1 = wp.length(e1)
        l2 = wp.length(e2)
        fd.il2 = inverse_squares(l0, l1, l2)
        if wp.abs(area2) > tiny and l0 > tiny and l1 > tiny and l2 > tiny:
            sg = one
            if area2 < zero:
                sg = -one
            # signed distance to edge k's line: sg * cross(e_k, p - a_k) / |e_k|, a_k = start of edge k
            fd.edge = mat33(
                -sg * e0[1] / l0, sg * e0[0] / l0, sg * (e0[1] * v1[0] - e0[0] * v1[1]) / l0,
                -sg * e1[1] / l1, sg * e1[0] / l1, sg * (e1[1] * v2[0] - e1[0] * v2[1]) / l1,
                -sg * e2[1] / l2, sg * e2[0] / l2, sg * (e2[1] * v0[0] - e2[0] * v0[1]) / l2,
            )
            aa = wp.abs(area2)
            fd.scale = vec3(l0 / aa, l1 / aa, l2 / aa)
        else:
            # degenerate: never inside, never rejected by the edge test (outside branch decides)
            fd.edge = mat33(zero, zero, -tiny, zero, zero, -tiny, zero, zero, -tiny)
            fd.scale = vec3(zero, zero, zero)
        xmin = wp.min(wp.min(v0[0], v1[0]), v2[0]) - margin
        xmax = wp.max(wp.max(v0[0], v1[0]), v2[0]) + margin
        ymin = wp.min(wp.min(v0[1], v1[1]), v2[1]) - margin
        ymax = wp.max(wp.max(v0[1], v1[1]), v2[1]) + margin
        fd.bbox = vec4(xmin, xmax, ymin, ymax)
        face_data[bf] = fd
        # pixel centres inside the box, clamped to the image (clamp before int conversion: no overflow)
        fw = scalar(width)
        fh = scalar(height)
        x0 = int(wp.ceil(wp.clamp(xmin, -one, fw)))
        x1 = int(wp.floor(wp.clamp(xmax, -one, fw)))
        y0 = int(wp.ceil(wp.clamp(ymin, -one, fh)))
        y1 = int(wp.floor(wp.clamp(ymax, -one, fh)))
        x0 = wp.max(x0, 0)
        y0 = wp.max(y0, 0)
        x1 = wp.min(x1, width - 1)
        y1 = wp.min(y1, height - 1)
        if x0 <= x1 and y0 <= y1:
            face_tiles[bf] = wp.vec4i(x0 / tile, x1 / tile, y0 / tile, y1 / tile)

    @wp.kernel(enable_backward=False, module=module)
    def bin_count(
        face_tiles: wp.array(dtype=wp.vec4i),
        n_faces: int,
        tiles_x: int,
        n_tiles: int,
        # outputs
        tile_count: wp.array(dtype=wp.int32),  # (B*NT,)
    ):
        bf = wp.tid()
        b = bf / n_faces
        r = face_tiles[bf]
        for ty in range(r[2], r[3] + 1):
            for tx in range(r[0], r[1] + 1):
                wp.atomic_add(tile_count, b * n_tiles + ty * tiles_x + tx, 1)

    @wp.kernel(enable_backward=False, module=module)
    def bin_fill(
        face_tiles: wp.array(dtype=wp.vec4i),
        tile_start: wp.array(dtype=wp.int32),  # (B*NT + 1,) exclusive scan of the counts
        n_faces: int,
        tiles_x: int,
        n_tiles: int,
        # outputs
        tile_cursor: wp.array(dtype=wp.int32),  # (B*NT,) zeroed
        tile_faces: wp.array(dtype=wp.int32),  # (total,) face index within the mesh
    ):
        bf = wp.tid()
        b = bf / n_faces
        f = bf - b * n_faces
        r = face_tiles[bf]
        for ty in range(r[2], r[3] + 1):
            for tx in range(r[0], r[1] + 1):
                t = b * n_tiles + ty * tiles_x + tx
                slot = wp.atomic_add(tile_cursor, t, 1)
                tile_faces[tile_start[t] + slot] = f

    return SimpleNamespace(face_setup=face_setup, bin_count=bin_count, bin_fill=bin_fill)
