"""Shading kernels of the soft rasterizer (one thread per pixel over its K depth-sorted fragments): soft
silhouettes (``silhouette_forward`` / ``silhouette_backward``: per-instance full and visible coverage, union)
and soft depth (``depth_forward`` / ``depth_backward``), with hand-written backward kernels. Registered in the
per-scalar-type warp module that :func:`.warp_kernels.common_kernels` builds (after the binning kernels).
"""

from types import SimpleNamespace

import warp as wp

__all__ = ["make_shading"]


def make_shading(scalar, module: str) -> SimpleNamespace:
    """Silhouette and depth shading kernels for warp scalar type ``scalar``, in warp module ``module``."""
    zero = scalar(0.0)
    one = scalar(1.0)

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

    return SimpleNamespace(silhouette_forward=silhouette_forward, silhouette_backward=silhouette_backward,
                           depth_forward=depth_forward, depth_backward=depth_backward)
