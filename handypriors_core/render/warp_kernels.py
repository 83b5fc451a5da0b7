"""warp-lang kernels of the soft rasterizer (CPU and CUDA), built per scalar type (float32 / float64) and
fragment count by factories, one warp module per factory.

Only :mod:`.bridge` launches these. Nothing here is differentiated by warp's autodiff: every kernel is
compiled with ``enable_backward=False`` and each differentiable stage has a hand-written backward kernel
(``raster_backward``, ``silhouette_backward``, ``depth_backward``), tested against float64 finite differences
(gradcheck) and the dense reference.

Pipeline: ``face_setup`` (per face: screen box grown by the blur margin, edge-line equations, tile range) ->
``bin_count`` / scan / ``bin_fill`` (per-tile face lists, exact sizes) -> ``raster_forward`` (one thread per
pixel walks its tile's list and keeps up to K fragments front to back) -> ``silhouette_*`` and ``depth_*``
(one thread per pixel over its K fragments).

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

#: Faces whose doubled screen area (or an edge length) is below this [px^2 / px] have no interior.
DEGENERATE_EPS = 1e-12

_CACHE: dict = {}


def _wp_scalar(dtype: torch.dtype):
    if dtype == torch.float32:
        return wp.float32
    if dtype == torch.float64:
        return wp.float64
    raise TypeError(f"render kernels support float32 and float64; got {dtype}")


def common_kernels(dtype: torch.dtype) -> SimpleNamespace:
    """Kernels that depend on the scalar type only: face setup, binning, silhouette shading."""
    key = ("common", dtype)
    if key not in _CACHE:
        _CACHE[key] = _make_common(_wp_scalar(dtype))
    return _CACHE[key]


def raster_kernels(dtype: torch.dtype, faces_per_pixel: int) -> SimpleNamespace:
    """Per-pixel rasterizer keeping ``faces_per_pixel`` fragments, and its backward kernel."""
    key = ("raster", dtype, int(faces_per_pixel))
    if key not in _CACHE:
        _CACHE[key] = _make_raster(_wp_scalar(dtype), int(faces_per_pixel))
    return _CACHE[key]


def _make_geometry(scalar):
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


def _make_common(scalar):
    vec2 = wp.types.vector(2, scalar)
    vec3 = wp.types.vector(3, scalar)
    vec4 = wp.types.vector(4, scalar)
    mat33 = wp.types.matrix((3, 3), scalar)
    mat32 = wp.types.matrix((3, 2), scalar)
    geo = _make_geometry(scalar)
    cross2 = geo.cross2
    inverse_squares = geo.inverse_squares
    zero = scalar(0.0)
    one = scalar(1.0)
    tiny = scalar(DEGENERATE_EPS)
    FaceData = face_struct(scalar)
    module = f"handypriors_render_common_{scalar.__name__}"

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

    @wp.func
    def coverage(dist: scalar, inv_sigma: scalar, eps: scalar) -> scalar:
        """Soft coverage max(0, (sigmoid(dist / sigma) - eps) / (1 - eps)); 0 beyond the blur margin."""
        s = one / (one + wp.exp(-dist * inv_sigma))
        return wp.max(zero, (s - eps) / (one - eps))

    @wp.kernel(enable_backward=False, module=module)
    def silhouette_forward(
        frag_face: wp.array2d(dtype=wp.int32),  # (P, K) depth-sorted, -1 = empty (empties trail)
        frag_dist: wp.array2d(dtype=scalar),  # (P, K) signed squared distance [px^2]
        face_instance: wp.array(dtype=wp.int32),  # (F,)
        n_inst: int,
        inv_sigma: scalar,
        eps: scalar,
        offset: int,
        # outputs
        full: wp.array2d(dtype=scalar),  # (P, NI) 1 - prod(1 - D) over the instance's faces
        visible: wp.array2d(dtype=scalar),  # (P, NI) sum D_j T_j over the instance's faces
        union_out: wp.array(dtype=scalar),  # (P,)
        trans: wp.array2d(dtype=scalar),  # (P, K) transmittance after slot j: prod_{i <= j} (1 - D_i)
    ):
        p = wp.tid() + offset
        n_slots = frag_face.shape[1]
        for k in range(n_inst):
            full[p, k] = one
            visible[p, k] = zero
        t = one
        for j in range(n_slots):
            f = frag_face[p, j]
            if f < 0:
                trans[p, j] = t
                continue
            k = face_instance[f]
            d = coverage(frag_dist[p, j], inv_sigma, eps)
            visible[p, k] = visible[p, k] + d * t
            full[p, k] = full[p, k] * (one - d)
            t = t * (one - d)
            trans[p, j] = t
        for k in range(n_inst):
            full[p, k] = one - full[p, k]
        union_out[p] = one - t

    @wp.kernel(enable_backward=False, module=module)
    def silhouette_backward(
        frag_face: wp.array2d(dtype=wp.int32),
        frag_dist: wp.array2d(dtype=scalar),
        face_instance: wp.array(dtype=wp.int32),
        full: wp.array2d(dtype=scalar),
        trans: wp.array2d(dtype=scalar),
        grad_full: wp.array2d(dtype=scalar),  # (P, NI)
        grad_visible: wp.array2d(dtype=scalar),  # (P, NI)
        grad_union: wp.array(dtype=scalar),  # (P,)
        inv_sigma: scalar,
        eps: scalar,
        offset: int,
        # outputs
        grad_dist: wp.array2d(dtype=scalar),  # (P, K)
    ):
        # With s = sigmoid(x), x = dist / sigma, D = (s - eps) / (1 - eps): dD/dx = s (1 - D), hence
        #   d full_k / dx_m = s_m (1 - full_k)            (m in instance k)
        #   d sum_k g_k visible_k / dx_m = s_m T_{m+1} (g_{k_m} - R_m),
        #   R_m = sum_{j > m} g_{k_j} D_j prod_{m < i < j} (1 - D_i)   (back-to-front recursion).
        p = wp.tid() + offset
        n_slots = frag_face.shape[1]
        gu = grad_union[p]
        r = zero
        for jj in range(n_slots):
            j = n_slots - 1 - jj
            f = frag_face[p, j]
            if f < 0:
                grad_dist[p, j] = zero
                continue
            k = face_instance[f]
            x = frag_dist[p, j] * inv_sigma
            s = one / (one + wp.exp(-x))
            d = wp.max(zero, (s - eps) / (one - eps))
            g = grad_visible[p, k] + gu
            gx = zero
            if d > zero:
                gx = s * (trans[p, j] * (g - r) + grad_full[p, k] * (one - full[p, k]))
            grad_dist[p, j] = gx * inv_sigma
            r = g * d + (one - d) * r

    @wp.kernel(enable_backward=False, module=module)
    def depth_forward(
        frag_face: wp.array2d(dtype=wp.int32),  # (P, K)
        frag_z: wp.array2d(dtype=scalar),  # (P, K) [m]
        frag_dist: wp.array2d(dtype=scalar),  # (P, K) [px^2]
        inv_sigma: scalar,
        eps: scalar,
        inv_gamma: scalar,
        z_far: scalar,
        inv_range: scalar,  # 1 / (z_far - z_near)
        bg_weight: scalar,
        bg_depth: scalar,
        offset: int,
        # outputs
        depth: wp.array(dtype=scalar),  # (P,) [m]
    ):
        # softmax blend: w_j = D_j exp((zn_j - zmax) / gamma), zn = (z_far - z) / (z_far - z_near)
        p = wp.tid() + offset
        n_slots = frag_face.shape[1]
        zmax = bg_weight
        for j in range(n_slots):
            if frag_face[p, j] < 0:
                break
            if coverage(frag_dist[p, j], inv_sigma, eps) > zero:
                zmax = wp.max(zmax, (z_far - frag_z[p, j]) * inv_range)
        wsum = wp.exp((bg_weight - zmax) * inv_gamma)
        num = wsum * bg_depth
        for j in range(n_slots):
            if frag_face[p, j] < 0:
                break
            d = coverage(frag_dist[p, j], inv_sigma, eps)
            if d > zero:
                z = frag_z[p, j]
                w = d * wp.exp(((z_far - z) * inv_range - zmax) * inv_gamma)
                wsum += w
                num += w * z
        depth[p] = num / wsum

    @wp.kernel(enable_backward=False, module=module)
    def depth_backward(
        frag_face: wp.array2d(dtype=wp.int32),
        frag_z: wp.array2d(dtype=scalar),
        frag_dist: wp.array2d(dtype=scalar),
        depth: wp.array(dtype=scalar),
        grad_depth: wp.array(dtype=scalar),
        inv_sigma: scalar,
        eps: scalar,
        inv_gamma: scalar,
        z_far: scalar,
        inv_range: scalar,
        bg_weight: scalar,
        offset: int,
        # outputs
        grad_z: wp.array2d(dtype=scalar),  # (P, K)
        grad_dist: wp.array2d(dtype=scalar),  # (P, K)
    ):
        # depth = sum_j w_j z_j / W (background included): d depth / d w_j = (z_j - depth) / W,
        # d w_j / d z_j = -w_j / (gamma (z_far - z_near)), d w_j / d dist_j = e_j s_j (1 - s_j) / ((1 - eps) sigma)
        p = wp.tid() + offset
        n_slots = frag_face.shape[1]
        zmax = bg_weight
        for j in range(n_slots):
            grad_z[p, j] = zero
            grad_dist[p, j] = zero
        for j in range(n_slots):
            if frag_face[p, j] < 0:
                break
            if coverage(frag_dist[p, j], inv_sigma, eps) > zero:
                zmax = wp.max(zmax, (z_far - frag_z[p, j]) * inv_range)
        wsum = wp.exp((bg_weight - zmax) * inv_gamma)
        for j in range(n_slots):
            if frag_face[p, j] < 0:
                break
            d = coverage(frag_dist[p, j], inv_sigma, eps)
            if d > zero:
                wsum += d * wp.exp(((z_far - frag_z[p, j]) * inv_range - zmax) * inv_gamma)
        g = grad_depth[p] / wsum
        dp = depth[p]
        for j in range(n_slots):
            if frag_face[p, j] < 0:
                break
            x = frag_dist[p, j] * inv_sigma
            s = one / (one + wp.exp(-x))
            d = wp.max(zero, (s - eps) / (one - eps))
            if d > zero:
                z = frag_z[p, j]
                e = wp.exp(((z_far - z) * inv_range - zmax) * inv_gamma)
                w = d * e
                grad_z[p, j] = g * (w - (z - dp) * w * inv_range * inv_gamma)
                grad_dist[p, j] = g * (z - dp) * e * s * (one - s) / (one - eps) * inv_sigma

    return SimpleNamespace(
        scalar=scalar,
        vec2=vec2,
        vec3=vec3,
        vec4=vec4,
        mat33=mat33,
        mat32=mat32,
        FaceData=FaceData,
        face_setup=face_setup,
        bin_count=bin_count,
        bin_fill=bin_fill,
        silhouette_forward=silhouette_forward,
        silhouette_backward=silhouette_backward,
        depth_forward=depth_forward,
        depth_backward=depth_backward,
    )


def _make_raster(scalar, K: int):
    vec2 = wp.types.vector(2, scalar)
    vec3 = wp.types.vector(3, scalar)
    CAP = 2 * K  # a pixel collects up to 2K fragments before compacting to the best K
    vecC = wp.types.vector(CAP, scalar)
    veciC = wp.types.vector(CAP, wp.int32)
    vec8 = wp.types.vector(8, scalar)

    geo = _make_geometry(scalar)
    cross2 = geo.cross2
    closest = geo.closest
    inverse_squares = geo.inverse_squares
    zero = scalar(0.0)
    one = scalar(1.0)
    two = scalar(2.0)
    tiny = scalar(DEGENERATE_EPS)
    FaceData = face_struct(scalar)
    module = f"handypriors_render_raster_{scalar.__name__}_k{K}"

    @wp.kernel(enable_backward=False, module=module)
    def raster_forward(
        face_data: wp.array(dtype=FaceData),
        tile_start: wp.array(dtype=wp.int32),
        tile_faces: wp.array(dtype=wp.int32),
        n_faces: int,
        width: int,
        height: int,
        tile: int,
        tiles_x: int,
        n_tiles: int,
        margin: scalar,  # blur margin [px]; 0 = hard rasterization (inside only)
        inv_sigma: scalar,  # 1 / sigma [1/px^2]
        eps: scalar,  # blur threshold
        hard: int,  # 1: keep the K nearest (z-buffer), no coverage
        offset: int,
        # outputs
        out_face: wp.array2d(dtype=wp.int32),  # (P, K) face index, -1 = empty
        out_z: wp.array2d(dtype=scalar),  # (P, K) depth [m]
        out_dist: wp.array2d(dtype=scalar),  # (P, K) signed squared distance [px^2]
        out_bary: wp.array2d(dtype=vec3),  # (P, K) perspective-correct barycentrics
        out_count: wp.array(dtype=wp.int32),  # (P,) faces within the margin (may exceed K)
    ):
        # Keeps up to K faces within the margin, sorted front to back (by inverse depth). When more are
        # found, the list grows to 2K and is then cut back to the K contributing most to their instance's
        # silhouette, D_j * prod_{i in front, same instance} (1 - D_i); in hard mode to the K nearest.
        p = wp.tid() + offset
        hw = width * height
        b = p / hw
        rem = p - b * hw
        y = rem / width
        x = rem - y * width
        t = b * n_tiles + (y / tile) * tiles_x + x / tile
        px = scalar(x)
        py = scalar(y)
        pp = vec2(px, py)
        ph = vec3(px, py, one)
        margin2 = margin * margin
        izs = vecC()
        ds = vecC()
        cs = vecC()
        ks = veciC()
        as_ = vecC()
        bs = vecC()
        fs = veciC()
        order = veciC()
        cnt = int(0)  # noqa: UP018, RUF046 - warp needs typed dynamic variables
        total = int(0)  # noqa: UP018, RUF046
        base = b * n_faces
        e_end = tile_start[t + 1]
        for e in range(tile_start[t], e_end + 1):
            if e < e_end:
                f = tile_faces[e]
                bf = base + f
                bb = face_data[bf].bbox
                if px < bb[0] or px > bb[1] or py < bb[2] or py > bb[3]:
                    continue
                ed = face_data[bf].edge * ph
                emin = wp.min(wp.min(ed[0], ed[1]), ed[2])
                if emin < -margin:
                    continue
                dist = zero
                la = zero
                lb = zero
                if emin >= zero:
                    sc = face_data[bf].scale
                    la = ed[0] * sc[0]
                    lb = ed[1] * sc[1]
                    dist = emin * emin
                else:
                    xy = face_data[bf].xy
                    cl = closest(pp, xy[0], xy[1], xy[2], ed, face_data[bf].il2)
                    if cl[3] >= margin2:
                        continue
                    la = cl[0]
                    lb = cl[1]
                    dist = -cl[3]
                w = face_data[bf].w
                iz = la * w[0] + lb * w[1] + (one - la - lb) * w[2]
                total += 1
                # payload in slots 0..cnt-1 (unsorted), order[] = slot ids front to back; slot cnt is free
                slot = cnt
                izs[slot] = iz
                ds[slot] = dist
                cs[slot] = -one  # coverage, computed when first needed (only overflowing pixels need it)
                ks[slot] = face_data[bf].inst
                as_[slot] = la
                bs[slot] = lb
                fs[slot] = f
                pos = cnt
                while pos > 0:
                    prev = order[pos - 1]
                    if izs[prev] >= iz:
                        break
                    order[pos] = prev
                    pos -= 1
                order[pos] = slot
                cnt += 1
            if cnt > K and (cnt == CAP or e == e_end):
                # Compact to the K fragments contributing most to their instance's silhouette,
                # c_j = D_j prod_{i in front, same instance} (1 - D_i) (hard mode: the K nearest).
                cj = vecC()
                tk = vec8(one, one, one, one, one, one, one, one)
                for j in range(cnt):
                    sj = order[j]
                    if hard == 0:
                        cov = cs[sj]
                        if cov < zero:
                            cov = wp.max(zero, (one / (one + wp.exp(-ds[sj] * inv_sigma)) - eps) / (one - eps))
                            cs[sj] = cov
                        kj = ks[sj]
                        cj[j] = cov * tk[kj]
                        tk[kj] = tk[kj] * (one - cov)
                    else:
                        cj[j] = -scalar(j)
                # threshold = the (cnt - K)-th smallest contribution (insertion sort of a copy)
                srt = vecC()
                for j in range(cnt):
                    v = cj[j]
                    q = j
                    while q > 0:
                        if srt[q - 1] <= v:
                            break
                        srt[q] = srt[q - 1]
                        q -= 1
                    srt[q] = v
                n_drop = cnt - K
                thr = srt[n_drop - 1]
                n_less = int(0)  # noqa: UP018, RUF046
                n_tie = int(0)  # noqa: UP018, RUF046
                for j in range(cnt):
                    if cj[j] < thr:
                        n_less += 1
                    elif cj[j] == thr:
                        n_tie += 1
                keep_tie = n_tie - (n_drop - n_less)  # ties kept front to back
                t_iz = vecC()
                t_d = vecC()
                t_c = vecC()
                t_k = veciC()
                t_a = vecC()
                t_b = vecC()
                t_f = veciC()
                n = int(0)  # noqa: UP018, RUF046
                for j in range(cnt):
                    keep = cj[j] > thr
                    if cj[j] == thr and keep_tie > 0:
                        keep = True
                        keep_tie -= 1
                    if keep:
                        sj = order[j]
                        t_iz[n] = izs[sj]
                        t_d[n] = ds[sj]
                        t_c[n] = cs[sj]
                        t_k[n] = ks[sj]
                        t_a[n] = as_[sj]
                        t_b[n] = bs[sj]
                        t_f[n] = fs[sj]
                        n += 1
                for j in range(K):
                    izs[j] = t_iz[j]
                    ds[j] = t_d[j]
                    cs[j] = t_c[j]
                    ks[j] = t_k[j]
                    as_[j] = t_a[j]
                    bs[j] = t_b[j]
                    fs[j] = t_f[j]
                    order[j] = j
                cnt = K
        for j in range(K):
            if j < cnt:
                sl = order[j]
                f = fs[sl]
                w = face_data[base + f].w
                z = one / izs[sl]
                la = as_[sl]
                lb = bs[sl]
                lc = one - la - lb
                out_face[p, j] = f
                out_z[p, j] = z
                out_dist[p, j] = ds[sl]
                out_bary[p, j] = vec3(la * w[0] * z, lb * w[1] * z, lc * w[2] * z)
            else:
                out_face[p, j] = -1
                out_z[p, j] = zero
                out_dist[p, j] = zero
                out_bary[p, j] = vec3(zero, zero, zero)
        out_count[p] = total

    @wp.kernel(enable_backward=False, module=module)
    def raster_backward(
        verts2d: wp.array(dtype=vec2),  # (B*V,)
        inv_depth: wp.array(dtype=scalar),  # (B*V,)
        faces: wp.array(dtype=wp.vec3i),  # (F,)
        frag_face: wp.array2d(dtype=wp.int32),  # (P, K)
        grad_z: wp.array2d(dtype=scalar),
        grad_dist: wp.array2d(dtype=scalar),
        grad_bary: wp.array2d(dtype=vec3),
        n_verts: int,
        width: int,
        height: int,
        with_attr: int,  # 0: grad_z and grad_bary are all zero (silhouette-only losses)
        offset: int,
        # outputs (accumulated)
        grad_xy: wp.array(dtype=vec2),  # (B*V,)
        grad_w: wp.array(dtype=scalar),  # (B*V,)
    ):
        p = wp.tid() + offset
        hw = width * height
        b = p / hw
        rem = p - b * hw
        y = rem / width
        x = rem - y * width
        pp = vec2(scalar(x), scalar(y))
        for j in range(K):
            f = frag_face[p, j]
            if f < 0:
                break
            gd = grad_dist[p, j]
            gz = zero
            gb = vec3(zero, zero, zero)
            if with_attr != 0:
                gz = grad_z[p, j]
                gb = grad_bary[p, j]
            if gd == zero and gz == zero and gb[0] == zero and gb[1] == zero and gb[2] == zero:
                continue
            ids = faces[f]
            i0 = b * n_verts + ids[0]
            i1 = b * n_verts + ids[1]
            i2 = b * n_verts + ids[2]
            v0 = verts2d[i0]
            v1 = verts2d[i1]
            v2 = verts2d[i2]
            # A_k = cross(v[k+2] - v[k+1], p - v[k+1]) = cross(r_{k+1}, r_{k+2}), r = v - p
            r0 = v0 - pp
            r1 = v1 - pp
            r2 = v2 - pp
            a0 = cross2(r1, r2)
            a1 = cross2(r2, r0)
            a2 = cross2(r0, r1)
            area2 = cross2(v1 - v0, v2 - v0)
            e0 = v2 - v1
            e1 = v0 - v2
            e2 = v1 - v0
            n0 = wp.length(e0)
            n1 = wp.length(e1)
            n2 = wp.length(e2)
            nondeg = wp.abs(area2) > tiny and n0 > tiny and n1 > tiny and n2 > tiny
            sg = one
            if area2 < zero:
                sg = -one
            # signed distances to the edge lines (+ inside); degenerate faces: all "outside"
            ev = vec3(-tiny, -tiny, -tiny)
            if nondeg:
                ev = vec3(sg * a0 / n0, sg * a1 / n1, sg * a2 / n2)
            inside = ev[0] >= zero and ev[1] >= zero and ev[2] >= zero
            g0 = vec2(zero, zero)
            g1 = vec2(zero, zero)
            g2 = vec2(zero, zero)
            l0 = zero
            l1 = zero
            l2 = zero
            if inside:
                l0 = a0 / area2
                l1 = a1 / area2
                l2 = a2 / area2
            else:
                cl = closest(pp, v0, v1, v2, ev, inverse_squares(n0, n1, n2))
                l0 = cl[0]
                l1 = cl[1]
                l2 = cl[2]
            ga0 = zero
            ga1 = zero
            ga2 = zero
            gw = vec3(zero, zero, zero)
            gl0 = zero
            gl1 = zero
            gl2 = zero
            if with_attr != 0:
                # depth and perspective barycentrics: iz = sum l_k w_k, z = 1/iz, b_k = l_k w_k z
                w = vec3(inv_depth[i0], inv_depth[i1], inv_depth[i2])
                z = one / (l0 * w[0] + l1 * w[1] + l2 * w[2])
                gz_eff = gz + gb[0] * l0 * w[0] + gb[1] * l1 * w[1] + gb[2] * l2 * w[2]
                giz = -z * z * gz_eff
                gl0 = gb[0] * w[0] * z + giz * w[0]
                gl1 = gb[1] * w[1] * z + giz * w[1]
                gl2 = gb[2] * w[2] * z + giz * w[2]
                gw = vec3(gb[0] * l0 * z + giz * l0, gb[1] * l1 * z + giz * l1, gb[2] * l2 * z + giz * l2)
            if inside:
                if with_attr != 0:
                    # d l_k / d A_m = (delta_km - l_k) / area2
                    mean = gl0 * l0 + gl1 * l1 + gl2 * l2
                    ga0 = (gl0 - mean) / area2
                    ga1 = (gl1 - mean) / area2
                    ga2 = (gl2 - mean) / area2
                # dist = e_m^2 with e_m = sg A_m / |edge_m| the nearest edge line's distance
                if gd != zero:
                    if ev[0] <= ev[1] and ev[0] <= ev[2]:
                        ge = two * gd * ev[0]
                        ga0 = ga0 + ge * sg / n0
                        gn = -ge * ev[0] / n0  # d/d|edge0|, edge0 = v2 - v1
                        g2 = g2 + gn * e0 / n0
                        g1 = g1 - gn * e0 / n0
                    elif ev[1] <= ev[2]:
                        ge = two * gd * ev[1]
                        ga1 = ga1 + ge * sg / n1
                        gn = -ge * ev[1] / n1
                        g0 = g0 + gn * e1 / n1
                        g2 = g2 - gn * e1 / n1
                    else:
                        ge = two * gd * ev[2]
                        ga2 = ga2 + ge * sg / n2
                        gn = -ge * ev[2] / n2
                        g1 = g1 + gn * e2 / n2
                        g0 = g0 - gn * e2 / n2
                # A_0 = cross(r1, r2): dA/dr1 = (r2.y, -r2.x), dA/dr2 = (-r1.y, r1.x); cyclic for A_1, A_2
                g1 = g1 + ga0 * vec2(r2[1], -r2[0])
                g2 = g2 + ga0 * vec2(-r1[1], r1[0])
                g2 = g2 + ga1 * vec2(r0[1], -r0[0])
                g0 = g0 + ga1 * vec2(-r2[1], r2[0])
                g0 = g0 + ga2 * vec2(r1[1], -r1[0])
                g1 = g1 + ga2 * vec2(-r0[1], r0[0])
            else:
                # closest point q = va + t (vc - va) on the nearest edge (l of the opposite vertex is 0);
                # a vertex is an edge end with t in {0, 1}. dist = -|p - q|^2.
                va = v1
                vc = v2
                tt = l2
                gt = gl2 - gl1
                m = int(0)  # noqa: UP018, RUF046
                if l1 == zero:
                    va = v2
                    vc = v0
                    tt = l0
                    gt = gl0 - gl2
                    m = 1
                elif l2 == zero and l0 != zero:
                    va = v0
                    vc = v1
                    tt = l1
                    gt = gl1 - gl0
                    m = 2
                if l0 != zero and l1 != zero and l2 != zero:
                    tt = zero  # unreachable for valid closest points; keeps gradients finite
                ev2 = vc - va
                q = va + tt * ev2
                gq = -two * gd * (q - pp)
                ga = (one - tt) * gq
                gc = tt * gq
                ee = wp.dot(ev2, ev2)
                if with_attr != 0 and ee > tiny and tt > zero and tt < one:
                    rv = pp - va
                    # t = (rv . ev) / ee: dt/dvc = (rv - 2 t ev) / ee, dt/dva = (2 t ev - ev - rv) / ee
                    gc = gc + gt * (rv - two * tt * ev2) / ee
                    ga = ga + gt * (two * tt * ev2 - ev2 - rv) / ee
                if m == 0:
                    g1 = g1 + ga
                    g2 = g2 + gc
                elif m == 1:
                    g2 = g2 + ga
                    g0 = g0 + gc
                else:
                    g0 = g0 + ga
                    g1 = g1 + gc
            wp.atomic_add(grad_xy, i0, g0)
            wp.atomic_add(grad_xy, i1, g1)
            wp.atomic_add(grad_xy, i2, g2)
            if with_attr != 0:
                wp.atomic_add(grad_w, i0, gw[0])
                wp.atomic_add(grad_w, i1, gw[1])
                wp.atomic_add(grad_w, i2, gw[2])

    return SimpleNamespace(raster_forward=raster_forward, raster_backward=raster_backward, K=K)
