"""Rasterization kernels: ``raster_forward`` (one thread per pixel walks its tile's face list and keeps up to K
fragments front to back: face, signed squared distance, depth, barycentrics), ``raster_nearest`` (its hard
z-buffer case, K = 1 without blur margin: only the nearest face containing the pixel centre, no fragment list)
and the hand-written backward kernel ``raster_backward``; one warp module per scalar type and fragment count K.
"""

from types import SimpleNamespace

import warp as wp

from .kernel_geometry import DEGENERATE_EPS, face_struct, make_geometry

__all__ = ["make_raster"]


def make_raster(scalar, K: int) -> SimpleNamespace:
    """``raster_forward`` / ``raster_backward`` keeping ``K`` fragments per pixel, for warp scalar type ``scalar``."""
    vec2 = wp.types.vector(2, scalar)
    vec3 = wp.types.vector(3, scalar)
    CAP = 2 * K  # a pixel collects up to 2K fragments before compacting to the best K
    vecC = wp.types.vector(CAP, scalar)
    veciC = wp.types.vector(CAP, wp.int32)
    vec8 = wp.types.vector(8, scalar)

    geo = make_geometry(scalar)
    cross2 = geo.cross2
    closest = geo.closest
    inverse_squares = geo.inverse_squares
    zero = scalar(0.0)
    one = scalar(1.0)
    two = scalar(2.0)
    tiny = scalar(DEGENERATE_EPS)
    FaceData = face_struct(scalar)
    module = f"handypriors_render_raster_{scalar.__name__}_k{K}"

    @wp.func
    def pixel_and_tile(p: int, width: int, height: int, tile: int, tiles_x: int, n_tiles: int) -> wp.vec4i:
        """``(image b, column x, row y, tile t)`` of flat pixel index ``p`` over ``B`` images of ``height x width``."""
        hw = width * height
        b = p / hw
        rem = p - b * hw
        y = rem / width
        x = rem - y * width
        return wp.vec4i(b, x, y, b * n_tiles + (y / tile) * tiles_x + x / tile)

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
        pix = pixel_and_tile(p, width, height, tile, tiles_x, n_tiles)
        b = pix[0]
        t = pix[3]
        px = scalar(pix[1])
        py = scalar(pix[2])
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
    def raster_nearest(
        face_data: wp.array(dtype=FaceData),
        tile_start: wp.array(dtype=wp.int32),
        tile_faces: wp.array(dtype=wp.int32),
        n_faces: int,
        width: int,
        height: int,
        tile: int,
        tiles_x: int,
        n_tiles: int,
        offset: int,
        # outputs, as raster_forward's with K = 1
        out_face: wp.array2d(dtype=wp.int32),
        out_z: wp.array2d(dtype=scalar),
        out_dist: wp.array2d(dtype=scalar),
        out_bary: wp.array2d(dtype=vec3),
        out_count: wp.array(dtype=wp.int32),
    ):
        # raster_forward with hard = 1, margin = 0 and K = 1: the same faces, depths and ties (the first face of
        # the tile list wins among equally near ones), without the fragment list.
        p = wp.tid() + offset
        pix = pixel_and_tile(p, width, height, tile, tiles_x, n_tiles)
        b = pix[0]
        t = pix[3]
        px = scalar(pix[1])
        py = scalar(pix[2])
        ph = vec3(px, py, one)
        best = int(-1)  # noqa: UP018, RUF046 - warp needs typed dynamic variables
        total = int(0)  # noqa: UP018, RUF046
        best_iz = scalar(0.0)
        best_d = scalar(0.0)
        best_a = scalar(0.0)
        best_b = scalar(0.0)
        base = b * n_faces
        for e in range(tile_start[t], tile_start[t + 1]):
            f = tile_faces[e]
            bf = base + f
            fd = face_data[bf]
            bb = fd.bbox
            if px < bb[0] or px > bb[1] or py < bb[2] or py > bb[3]:
                continue
            ed = fd.edge * ph
            emin = wp.min(wp.min(ed[0], ed[1]), ed[2])
            if emin < zero:
                continue
            sc = fd.scale
            la = ed[0] * sc[0]
            lb = ed[1] * sc[1]
            w = fd.w
            iz = la * w[0] + lb * w[1] + (one - la - lb) * w[2]
            total += 1
            if best < 0 or iz > best_iz:
                best = f
                best_iz = iz
                best_d = emin * emin
                best_a = la
                best_b = lb
        if best >= 0:
            w = face_data[base + best].w
            z = one / best_iz
            out_face[p, 0] = best
            out_z[p, 0] = z
            out_dist[p, 0] = best_d
            out_bary[p, 0] = vec3(best_a * w[0] * z, best_b * w[1] * z, (one - best_a - best_b) * w[2] * z)
        else:
            out_face[p, 0] = -1
            out_z[p, 0] = zero
            out_dist[p, 0] = zero
            out_bary[p, 0] = vec3(zero, zero, zero)
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

    return SimpleNamespace(raster_forward=raster_forward, raster_nearest=raster_nearest,
                           raster_backward=raster_backward, K=K)

