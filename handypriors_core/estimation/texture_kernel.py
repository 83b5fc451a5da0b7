"""The texture modality's CPU path as two kept warp launches: the frame's summed-area table, then one pass per
linearisation.

:class:`TexturePlan` holds, for one :class:`~.texture.TextureModality`, the buffers and recorded launches of:

0. ``prepare`` (per frame, one launch, one thread): the keyframe's points projected at the predicted pose give the
   box of the image to read (their extent plus the blur and search margins, cut to the image); the luminance of the
   colour image over that box and its summed-area table (:func:`~.texture.luminance` and
   :func:`~.texture.summed_area_table`: column sums first, then row sums, in the same order as numpy's two
   ``cumsum``);

1. ``linearize`` (per Gauss-Newton iteration, one launch, one thread looping over the keyframe's points): each point
   posed and projected, the box-filtered image sampled bilinearly at it (:func:`~.texture.sample_box_bilinear`),
   whether it is usable (facing the camera, inside the box, not behind the known hand's z-buffer, read as
   :meth:`~.hand_occlusion.HandDepthLookup.at_pixels` does), its Jacobian row (:func:`~.texture.photometric_jacobian`);
   at a level's first linearisation of the frame the photometric model ``m`` (ridge least squares, a 5 x 5 solve
   by elimination) is fitted and its prediction ``m . [k, k n, 1]`` of every point held for the frame; then the
   usable points' residuals (intensity minus prediction), robust weights, compacted rows and the sums ``J^T W J``,
   ``J^T W r``, ``sum w``, ``sum w r^2``.

Same arithmetic per value as the array code of :mod:`.texture` (sums and the 5 x 5 solve in another order: equal
to rounding; ``test/test_texture_modality.py`` compares it with the torch path, which other devices take). Two
hundred points cost a few microseconds in compiled code and each numpy call on them about as much, so the launches
are recorded once (``record_cmd=True``) over buffers the plan keeps: per frame the colour image and the hand
z-buffer are re-bound, per iteration the pose and the level are written into small buffers. Warp's CPU backend runs
a launch on the calling thread and copies every parameter into its argument struct at each launch, so the buffers
are packed into a few arrays (the pose and settings into ``reals``, the per-point scratch into one table), and the
frame's arrays are re-bound by writing their address into the recorded parameter; the kernels compile once (cached in
``~/.cache/warp``).
"""

import numpy as np  # no `from __future__ import annotations`: warp reads the kernel annotations as objects
import warp as wp

from ..geometry.camera import MIN_DEPTH
from .sparse_depth_kernel import ROBUST_CODES, _hand_depth, _robust_weight

__all__ = ["TexturePlan"]

wp.set_module_options({"enable_backward": False})  # forward passes only (no adjoint code to compile)

# reals: the pose's first three rows (row-major, 12), fx, fy, cx, cy [px], min depth [m], min facing, hand margin
# [m], robust scale, luminance weights of r, g, b (per uint8 unit)
_FX, _FY, _CX, _CY, _MIN_Z, _FACING, _MARGIN, _SCALE, _LR, _LG, _LB = range(12, 23)
# ints: points, image width, height, margin [px], box x0, y0, width, height (out), box usable (out), level, radius,
# has hand, hand z-buffer width, height, largest pixel coordinate, robust code, kept (out), inliers (out), then per
# level whether its photometric model is fitted this frame
_COUNT, _WIDTH, _HEIGHT, _BOX_MARGIN, _X0, _Y0, _BW, _BH, _BOX_OK, _LEVEL, _RADIUS, _HAND, _HAND_W, _HAND_H, \
    _LIMIT, _ROBUST, _KEPT, _INLIERS, _FITTED = range(19)
# keyframe table rows: points x, y, z [m], normals x, y, z (object frame), then the intensity per level
_NORMALS, _REFS = 3, 6
# scratch table rows (per point): intensity, photometric features (5), Jacobian rows (6), then the kept points'
# residuals, rows (6), weights, whether usable, and the predicted intensity per level
_INTENSITY, _FEATURES, _ALL_ROWS, _RESIDUALS, _ROWS, _WEIGHTS, _USABLE, _PREDICTIONS = 0, 1, 6, 12, 13, 19, 20, 21
_MODEL = 5  # photometric model per level: gain, shading along the camera-frame normal (3), offset
# small: sums J^T W J (6 x 6, row-major), J^T W r (6), sum w, sum w r^2; the model's system (A 5 x 5, b 5); models
_SUMS, _WORK, _MODELS = 0, 44, 44 + _MODEL * (_MODEL + 1)


@wp.func
def _pose_rotation(reals: wp.array(dtype=wp.float64)) -> wp.mat33d:
    return wp.matrix_from_rows(wp.vec3d(reals[0], reals[1], reals[2]), wp.vec3d(reals[4], reals[5], reals[6]),
                               wp.vec3d(reals[8], reals[9], reals[10]))


@wp.kernel
def _prepare(rgb: wp.array(dtype=wp.uint8), keyframe: wp.array2d(dtype=wp.float64),
             reals: wp.array(dtype=wp.float64), ints: wp.array(dtype=wp.int32), columns: wp.array(dtype=wp.float64),
             sat: wp.array(dtype=wp.float64)):
    """One thread: the box around the points' projections and the summed-area table of its luminance (step 0)."""
    R = _pose_rotation(reals)
    t = wp.vec3d(reals[3], reals[7], reals[11])
    fx, fy, cx, cy, min_z = reals[_FX], reals[_FY], reals[_CX], reals[_CY], reals[_MIN_Z]
    u_min, v_min = wp.float64(wp.inf), wp.float64(wp.inf)
    u_max, v_max = wp.float64(-wp.inf), wp.float64(-wp.inf)
    for i in range(ints[_COUNT]):
        p = R * wp.vec3d(keyframe[0, i], keyframe[1, i], keyframe[2, i]) + t
        z = wp.max(p[2], min_z)
        u = p[0] / z * fx + cx
        v = p[1] / z * fy + cy
        u_min = wp.min(u_min, u)
        u_max = wp.max(u_max, u)
        v_min = wp.min(v_min, v)
        v_max = wp.max(v_max, v)
    margin, width, height = ints[_BOX_MARGIN], ints[_WIDTH], ints[_HEIGHT]
    x0, y0 = wp.max(int(u_min) - margin, 0), wp.max(int(v_min) - margin, 0)  # int(): towards zero, as Python's
    x1, y1 = wp.min(int(u_max) + margin + 2, width), wp.min(int(v_max) + margin + 2, height)
    ints[_X0] = x0
    ints[_Y0] = y0
    ints[_BW] = x1 - x0
    ints[_BH] = y1 - y0
    ints[_BOX_OK] = 0
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    ints[_BOX_OK] = 1
    w, h = x1 - x0, y1 - y0
    stride = w + 1
    lr, lg, lb = reals[_LR], reals[_LG], reals[_LB]
    zero = wp.float64(0.0)
    for j in range(stride):
        sat[j] = zero
    for j in range(w):
        columns[j] = zero
    for i in range(h):
        row = (i + 1) * stride
        sat[row] = zero
        pixel = ((y0 + i) * width + x0) * 3
        running = zero
        for j in range(w):
            k = pixel + 3 * j
            lum = wp.float64(rgb[k]) * lr + wp.float64(rgb[k + 1]) * lg + wp.float64(rgb[k + 2]) * lb
            columns[j] = columns[j] + lum
            running = running + columns[j]
            sat[row + j + 1] = running


@wp.func
def _box_mean(sat: wp.array(dtype=wp.float64), stride: int, w: int, h: int, radius: int, px: int, py: int
              ) -> wp.float64:
    """:func:`~.texture.box_means` of one integer pixel (the square cut to the image)."""
    x0, x1 = wp.min(wp.max(px - radius, 0), w), wp.min(wp.max(px + radius + 1, 0), w)
    y0, y1 = wp.min(wp.max(py - radius, 0), h), wp.min(wp.max(py + radius + 1, 0), h)
    top, bottom = y0 * stride, y1 * stride
    total = sat[bottom + x1] - sat[top + x1] - sat[bottom + x0] + sat[top + x0]
    return total / wp.float64((x1 - x0) * (y1 - y0))


@wp.func
def _fit_model(small: wp.array(dtype=wp.float64), level: int):
    """The level's model ``(A + ridge I)^-1 (b + ridge e_0)`` of the system ``(A (5 x 5) row-major, b (5))`` in
    ``small``, ``ridge = 0.01 (trace A / 5 + 1e-6)`` (:func:`~.texture._photometric_prediction`), by elimination
    without pivoting (the matrix is symmetric positive definite); the system is overwritten."""
    trace = wp.float64(0.0)
    for d in range(_MODEL):
        trace += small[_WORK + d * _MODEL + d]
    ridge = wp.float64(1e-2) * (trace / wp.float64(5.0) + wp.float64(1e-6))
    for d in range(_MODEL):
        small[_WORK + d * _MODEL + d] += ridge
    rhs = _WORK + _MODEL * _MODEL
    small[rhs] += ridge
    for col in range(_MODEL):
        pivot = small[_WORK + col * _MODEL + col]
        for row in range(col + 1, _MODEL):
            f = small[_WORK + row * _MODEL + col] / pivot
            for c in range(col, _MODEL):
                small[_WORK + row * _MODEL + c] -= f * small[_WORK + col * _MODEL + c]
            small[rhs + row] -= f * small[rhs + col]
    model = _MODELS + level * _MODEL
    for back in range(_MODEL):
        row = _MODEL - 1 - back
        acc = small[rhs + row]
        for c in range(row + 1, _MODEL):
            acc -= small[_WORK + row * _MODEL + c] * small[model + c]
        small[model + row] = acc / small[_WORK + row * _MODEL + row]


@wp.kernel
def _linearize(keyframe: wp.array2d(dtype=wp.float64), reals: wp.array(dtype=wp.float64),
               ints: wp.array(dtype=wp.int32), sat: wp.array(dtype=wp.float64),
               hand_consts: wp.array(dtype=wp.float32), hand_depth: wp.array(dtype=wp.float32),
               scratch: wp.array2d(dtype=wp.float64), small: wp.array(dtype=wp.float64)):
    """One thread: every point's sample, usability and Jacobian row, the level's photometric model on its first use,
    then the usable points' residuals, weights, rows and normal equations (the module's step 1)."""
    R = _pose_rotation(reals)
    t = wp.vec3d(reals[3], reals[7], reals[11])
    fx, fy, cx, cy, min_z = reals[_FX], reals[_FY], reals[_CX], reals[_CY], reals[_MIN_Z]
    min_facing, margin = reals[_FACING], reals[_MARGIN]
    ox, oy = wp.float64(ints[_X0]), wp.float64(ints[_Y0])
    w, h = ints[_BW], ints[_BH]
    stride = w + 1
    radius, level = ints[_RADIUS], ints[_LEVEL]
    has_hand, hand_w, hand_h = ints[_HAND], ints[_HAND_W], ints[_HAND_H]
    limit = wp.float64(ints[_LIMIT])
    fcx, ffx, fcy, ffy = hand_consts[0], hand_consts[1], hand_consts[2], hand_consts[3]
    rcx, rfx, rcy, rfy = hand_consts[4], hand_consts[5], hand_consts[6], hand_consts[7]
    zero, one = wp.float64(0.0), wp.float64(1.0)
    fit = ints[_FITTED + level] == 0
    if fit:
        for e in range(_MODEL * (_MODEL + 1)):
            small[_WORK + e] = zero
    for i in range(ints[_COUNT]):
        p = R * wp.vec3d(keyframe[0, i], keyframe[1, i], keyframe[2, i]) + t
        n = R * wp.vec3d(keyframe[_NORMALS, i], keyframe[_NORMALS + 1, i], keyframe[_NORMALS + 2, i])
        z = p[2]
        facing = -(n[0] * p[0] + n[1] * p[1] + n[2] * p[2]) / wp.sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2])
        zc = wp.max(z, min_z)
        u = p[0] / zc * fx + cx
        v = p[1] / zc * fy + cy
        x, y = u - ox, v - oy
        fx0, fy0 = wp.floor(x), wp.floor(y)
        ax, ay = x - fx0, y - fy0
        inside = fx0 >= zero and fx0 <= wp.float64(w - 2) and fy0 >= zero and fy0 <= wp.float64(h - 2)
        ix = int(wp.min(wp.max(fx0, zero), wp.float64(w - 2)))
        iy = int(wp.min(wp.max(fy0, zero), wp.float64(h - 2)))
        i00 = _box_mean(sat, stride, w, h, radius, ix, iy)
        i01 = _box_mean(sat, stride, w, h, radius, ix + 1, iy)
        i10 = _box_mean(sat, stride, w, h, radius, ix, iy + 1)
        i11 = _box_mean(sat, stride, w, h, radius, ix + 1, iy + 1)
        top = i00 + ax * (i01 - i00)
        bottom = i10 + ax * (i11 - i10)
        value = top + ay * (bottom - top)
        gx = (one - ay) * (i01 - i00) + ay * (i11 - i10)
        gy = bottom - top
        good = inside and facing >= min_facing and z > min_z
        if good and has_hand == 1:  # the hand z-buffer at the nearest full-image pixel (HandDepthLookup, float32)
            pu = wp.min(wp.max(wp.rint(u), wp.float64(-1.0)), limit)
            pv = wp.min(wp.max(wp.rint(v), wp.float64(-1.0)), limit)
            iu = int(wp.rint((wp.float32(pu) - fcx) / ffx * rfx + rcx))
            iv = int(wp.rint((wp.float32(pv) - fcy) / ffy * rfy + rcy))
            if not (_hand_depth(hand_depth, iu, iv, hand_w, hand_h) >= wp.float32(z + margin)):
                good = False
        gu, gv = gx * fx / z, gy * fy / z
        a = wp.vec3d(gu, gv, -(gu * p[0] + gv * p[1]) / z)
        c = wp.cross(p - t, a)
        for m in range(3):
            scratch[_ALL_ROWS + m, i] = a[m]
            scratch[_ALL_ROWS + 3 + m, i] = c[m]
        ref = keyframe[_REFS + level, i]
        scratch[_FEATURES, i] = ref
        scratch[_FEATURES + 1, i] = ref * n[0]
        scratch[_FEATURES + 2, i] = ref * n[1]
        scratch[_FEATURES + 3, i] = ref * n[2]
        scratch[_FEATURES + 4, i] = one
        scratch[_INTENSITY, i] = value
        scratch[_USABLE, i] = zero
        if good:
            scratch[_USABLE, i] = one
            if fit:
                for r in range(_MODEL):
                    fr = scratch[_FEATURES + r, i]
                    for s in range(_MODEL):
                        small[_WORK + r * _MODEL + s] += fr * scratch[_FEATURES + s, i]
                    small[_WORK + _MODEL * _MODEL + r] += fr * value
    if fit:  # (A + ridge I) m = b + ridge e_0: towards gain 1, no shading, no offset
        _fit_model(small, level)
        model = _MODELS + level * _MODEL
        for i in range(ints[_COUNT]):  # the level's predicted intensities, held for the frame
            held = zero
            for q in range(_MODEL):
                held += small[model + q] * scratch[_FEATURES + q, i]
            scratch[_PREDICTIONS + level, i] = held
        ints[_FITTED + level] = 1
    scale, code = reals[_SCALE], ints[_ROBUST]
    info = wp.spatial_matrixd()
    vector = wp.spatial_vectord()
    weight_sum = zero
    square_sum = zero
    kept = wp.int32(0)
    inliers = wp.int32(0)
    for i in range(ints[_COUNT]):
        if scratch[_USABLE, i] == zero:
            continue
        res = scratch[_INTENSITY, i] - scratch[_PREDICTIONS + level, i]
        j = wp.spatial_vectord(scratch[_ALL_ROWS, i], scratch[_ALL_ROWS + 1, i], scratch[_ALL_ROWS + 2, i],
                               scratch[_ALL_ROWS + 3, i], scratch[_ALL_ROWS + 4, i], scratch[_ALL_ROWS + 5, i])
        wt = _robust_weight(res, scale, code)
        wr = wt * res
        info += wp.outer(j * wt, j)
        vector += j * wr
        weight_sum += wt
        square_sum += wr * res
        for m in range(6):
            scratch[_ROWS + m, kept] = j[m]
        scratch[_RESIDUALS, kept] = res
        scratch[_WEIGHTS, kept] = wt
        if wt > wp.float64(0.5):
            inliers += 1
        kept += 1
    for m in range(6):
        for l in range(6):
            small[_SUMS + m * 6 + l] = info[m, l]
        small[_SUMS + 36 + m] = vector[m]
    small[_SUMS + 42] = weight_sum
    small[_SUMS + 43] = square_sum
    ints[_KEPT] = kept
    ints[_INLIERS] = inliers


def _view(array: np.ndarray, dtype) -> wp.array:
    """Zero-copy warp view of a C-contiguous numpy array (kept alive by the caller) as ``dtype``."""
    return wp.array(ptr=array.ctypes.data, dtype=dtype, shape=array.shape, device="cpu", copy=False)


def _rebind(launch, index: int, array: np.ndarray) -> None:
    """Point the recorded ``launch``'s 1-D array parameter ``index`` at the C-contiguous 1-D numpy ``array`` of its
    dtype (kept alive by the caller): the address and length written into the packed parameter (a warp array
    struct; index 0 of ``params`` is the launch bounds), which the next launch copies. ``set_param_at_index`` would
    build and pack a new warp array: tens of microseconds per frame under load."""
    param = launch.params[index + 1]
    param.data = array.ctypes.data
    param.shape[0] = array.shape[0]


class TexturePlan:
    """Buffers and recorded launches of the module's passes (see the module docstring).

    Args: capacity: the most points a keyframe holds; levels: blur levels; luma: the luminance weights of r, g, b
    (per uint8 unit).
    Attributes (of the last :meth:`linearize`, views of the plan's buffers): residuals ``(K,)``, rows ``(6, K)``,
    weights ``(K,)`` (the first ``kept`` entries), sums ``(44,)``: ``J^T W J`` row-major, ``J^T W r``, ``sum w``,
    ``sum w r^2``.
    """

    def __init__(self, capacity: int, levels: int, luma: tuple[float, float, float]) -> None:
        cap, lv = max(int(capacity), 1), max(int(levels), 1)
        self.levels = lv
        self.keyframe_table = np.zeros((_REFS + lv, cap))
        self.reals = np.zeros(23)
        self.ints = np.zeros(_FITTED + lv, np.int32)
        self.hand_consts = np.zeros(8, np.float32)
        self.scratch = np.zeros((_PREDICTIONS + lv, cap))
        self.small = np.zeros(_MODELS + _MODEL * lv)
        self.residuals = self.scratch[_RESIDUALS]
        self.rows = self.scratch[_ROWS:_ROWS + 6]
        self.weights = self.scratch[_WEIGHTS]
        self.sums = self.small[_SUMS:_SUMS + 44]
        self.reals[_MIN_Z] = MIN_DEPTH
        self.reals[_LR:_LB + 1] = luma
        self.keyframe = None  # the keyframe whose points are loaded
        self._columns = np.zeros(1)
        self._sat = np.zeros(1)
        self._frame_arrays: tuple = ()  # the current frame's bound arrays (kept alive while bound)
        keyframe, reals, ints = (_view(a, d) for a, d in ((self.keyframe_table, wp.float64), (self.reals, wp.float64),
                                                          (self.ints, wp.int32)))
        sat = _view(self._sat, wp.float64)
        self._no_rgb = np.zeros(1, np.uint8)
        self._no_hand = np.full(1, np.inf, np.float32)
        self._prepare = wp.launch(_prepare, dim=1, inputs=[
            _view(self._no_rgb, wp.uint8), keyframe, reals, ints, _view(self._columns, wp.float64), sat],
            device="cpu", record_cmd=True)
        self._linearize = wp.launch(_linearize, dim=1, inputs=[
            keyframe, reals, ints, sat, _view(self.hand_consts, wp.float32), _view(self._no_hand, wp.float32),
            _view(self.scratch, wp.float64), _view(self.small, wp.float64)], device="cpu", record_cmd=True)

    def load_keyframe(self, keyframe) -> None:
        """The keyframe's points, normals ``(3, K)`` and intensities ``(L, K)`` into the plan (once per keyframe)."""
        k = keyframe.points.shape[1]
        if k > self.keyframe_table.shape[1] or keyframe.intensities.shape[0] != self.levels:
            raise ValueError(f"a keyframe of {k} points x {keyframe.intensities.shape[0]} levels does not fit a plan "
                             f"of {self.keyframe_table.shape[1]} x {self.levels}")
        self.keyframe_table[:3, :k] = keyframe.points
        self.keyframe_table[_NORMALS:_NORMALS + 3, :k] = keyframe.normals
        self.keyframe_table[_REFS:, :k] = keyframe.intensities
        self.ints[_COUNT] = k
        self.keyframe = keyframe

    def prepare(self, rgb: np.ndarray, pose: np.ndarray, camera: tuple[float, float, float, float], margin: int,
                hand) -> tuple[int, int] | None:
        """Step 0 for the frame's colour image ``rgb (H, W, 3)`` uint8 at the predicted ``pose (4, 4)`` float64,
        ``camera = (fx, fy, cx, cy)`` [px], the box grown by ``margin`` [px], the hand z-buffer (a
        :class:`~.hand_occlusion.HandDepthLookup`) or None: the box's origin ``(x0, y0)`` [px], None when it is
        too small. The arrays are read by reference until the next call; every level's model is to be fitted."""
        height, width = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb, np.uint8).reshape(-1)
        if self._sat.shape[0] < (width + 1) * (height + 1):
            self._sat = np.zeros((width + 1) * (height + 1))
            self._columns = np.zeros(width)
            self._prepare.set_param_at_index(4, _view(self._columns, wp.float64))
            self._prepare.set_param_at_index(5, _view(self._sat, wp.float64))
            self._linearize.set_param_at_index(3, _view(self._sat, wp.float64))
        _rebind(self._prepare, 0, rgb)
        ints, reals = self.ints, self.reals
        ints[_WIDTH], ints[_HEIGHT], ints[_BOX_MARGIN], ints[_LIMIT] = width, height, margin, max(width, height)
        reals[:12] = pose[:3].reshape(-1)
        reals[_FX], reals[_FY], reals[_CX], reals[_CY] = camera
        ints[_FITTED:] = 0
        if hand is None:
            ints[_HAND] = 0
            self._frame_arrays = (rgb,)
        else:
            hand_depth = np.ascontiguousarray(hand.depth, np.float32)
            ints[_HAND], ints[_HAND_H], ints[_HAND_W] = 1, *hand_depth.shape
            self.hand_consts[:] = (*hand.full, *hand.roi)
            hand_depth = hand_depth.reshape(-1)
            _rebind(self._linearize, 5, hand_depth)
            self._frame_arrays = (rgb, hand_depth)
        self._prepare.launch()
        if not ints[_BOX_OK]:
            return None
        return int(ints[_X0]), int(ints[_Y0])

    def linearize(self, pose: np.ndarray, level: int, radius: int, min_facing: float, hand_margin: float,
                  scale: float, robust: str) -> tuple[int, int]:
        """Step 1 at ``pose (4, 4)`` float64 at blur ``level`` (box ``radius`` [px]): ``(kept, inliers)`` (usable
        points, those with a robust weight above one half); their residuals, rows, weights and sums are in
        :attr:`residuals`, :attr:`rows`, :attr:`weights`, :attr:`sums`."""
        ints, reals = self.ints, self.reals
        reals[:12] = pose[:3].reshape(-1)
        ints[_LEVEL], ints[_RADIUS], ints[_ROBUST] = level, radius, ROBUST_CODES[robust]
        reals[_FACING], reals[_MARGIN], reals[_SCALE] = min_facing, hand_margin, scale
        self._linearize.launch()
        return int(ints[_KEPT]), int(ints[_INLIERS])
