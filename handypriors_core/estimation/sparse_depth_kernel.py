"""The sparse depth modality's CPU path as three kept warp launches around the one plane-distance function.

:class:`SparseDepthPlan` holds, for one modality, the buffers and recorded launches of:

0. ``choose`` (per frame, one launch, one thread looping over the surface samples): the samples facing the camera
   and in front in a coarse z-buffer of themselves, not covered by the known hand (:func:`.sparse_depth.
   visible_points_array` and :meth:`~.hand_occlusion.HandDepthLookup.covers`, the same arithmetic);

then per Gauss-Newton iteration, over the frame's chosen points:

1. ``associate`` (one launch): posed points ``p = R p_obj + t`` and normals ``n = R n_obj``, the nearest pixel
   of each projection, the depth there back-projected to the target ``q``, and whether the pair counts (inside
   the image, valid depth, not behind the hand's z-buffer, read as :meth:`~.hand_occlusion.HandDepthLookup.
   at_pixels` does);
2. the residual ``n . (p - q)`` of every point by :func:`~.sparse_depth.plane_distances` in numpy (the function
   the refiner and the torch path evaluate: one implementation of the residual);
3. ``reduce`` (one launch): the points within the iteration's association range are kept, each with its Jacobian
   row ``[n, (q - t) x n]`` (projected off the shape's unseen twists when it has some), its robust weight, and the
   sums ``J^T W J``, ``J^T W r``, ``sum w``, ``sum w r^2`` and the number of distinct depth pixels read.

The arithmetic is that of the numpy path it replaced, element for element (sums in another order: equal to
rounding; the torch path of other devices is the reference, ``test_sparse_modalities``). A few thousand points
cost tens of microseconds in compiled code and each numpy call on them about as much, so the launches are recorded
once (``wp.launch(..., record_cmd=True)``) over buffers the plan keeps: per frame only the depth image and the hand
z-buffer are re-bound, per iteration the pose and the iteration's range are written into small buffers. Warp's
CPU backend runs a launch on the calling thread; the kernels compile once (cached in ``~/.cache/warp``).
"""

import numpy as np  # no `from __future__ import annotations`: warp reads the kernel annotations as objects
import warp as wp

from ..geometry.camera import MIN_DEPTH
from ..render.warp_views import KeptLaunch

__all__ = ["ROBUST_CODES", "SparseDepthPlan"]

#: robust function name -> the kernels' code (:func:`.residuals.robust_weights`)
ROBUST_CODES = {"none": 0, "huber": 1, "tukey": 2, "cauchy": 3, "geman_mcclure": 4, "charbonnier": 5}

# reals: camera fx, fy, cx, cy [px], largest pixel coordinate, min depth [m], hand margin [m], considered distance
# [m], robust scale [m], z-buffer cell [px], self-occlusion tolerance [m]
_FX, _FY, _CX, _CY, _LIMIT, _MIN_Z, _MARGIN, _DISTANCE, _SCALE, _CELL, _TOLERANCE = range(11)
# ints: chosen points, width, height, has hand, robust code, projects unseen twists, pixel stamp generation, samples,
# z-buffer columns and rows, hand z-buffer width and height, visible samples (out)
_COUNT, _WIDTH, _HEIGHT, _HAND, _ROBUST, _UNSEEN, _STAMP, _SAMPLES, _COLS, _ROWS, _HAND_W, _HAND_H, _VISIBLE = range(13)
# hand constants (float32): full camera cx, fx, cy, fy, region camera cx, fx, cy, fy [px], margin [m]
_SUMS = 36 + 6 + 2  # J^T W J (6 x 6, row-major), J^T W r (6), sum w, sum w r^2


@wp.func
def _robust_weight(r: wp.float64, scale: wp.float64, code: int) -> wp.float64:
    """:func:`.residuals.robust_weights` of one residual."""
    one = wp.float64(1.0)
    a = wp.abs(r / scale)
    if code == 1:
        return one / wp.max(a, one)
    if code == 2:
        inside = wp.min(a, one)
        b = one - inside * inside
        return b * b
    if code == 3:
        return one / (one + a * a)
    if code == 4:
        c = one + a * a
        return one / (c * c)
    if code == 5:
        return one / wp.sqrt(one + a * a)
    return one


@wp.func
def _pose_rotation(pose: wp.array(dtype=wp.float64)) -> wp.mat33d:
    return wp.matrix_from_rows(wp.vec3d(pose[0], pose[1], pose[2]), wp.vec3d(pose[4], pose[5], pose[6]),
                               wp.vec3d(pose[8], pose[9], pose[10]))


@wp.func
def _hand_depth(hand_depth: wp.array(dtype=wp.float32), iu: int, iv: int, width: int, height: int) -> wp.float32:
    """The hand z-buffer ``(height, width)`` at its pixel ``(iu, iv)``; ``inf`` outside."""
    if iu >= 0 and iu < width and iv >= 0 and iv < height:
        return hand_depth[iv * width + iu]
    return wp.float32(wp.inf)


@wp.kernel
def _choose(samples: wp.array(dtype=wp.vec3d), sample_normals: wp.array(dtype=wp.vec3d),
            pose: wp.array(dtype=wp.float64), reals: wp.array(dtype=wp.float64), ints: wp.array(dtype=wp.int32),
            hand_consts: wp.array(dtype=wp.float32), hand_depth: wp.array(dtype=wp.float32),
            zmin: wp.array(dtype=wp.float64), keys: wp.array(dtype=wp.int32), visible: wp.array(dtype=wp.int32)):
    """One thread: the visible samples not covered by the hand, ascending (the module's step 0)."""
    R = _pose_rotation(pose)
    t = wp.vec3d(pose[3], pose[7], pose[11])
    fx, fy, cx, cy = reals[_FX], reals[_FY], reals[_CX], reals[_CY]
    min_z, cell, tolerance = reals[_MIN_Z], reals[_CELL], reals[_TOLERANCE]
    cols, rows = ints[_COLS], ints[_ROWS]
    zero = wp.float64(0.0)
    for k in range(cols * rows):
        zmin[k] = wp.float64(wp.inf)
    for i in range(ints[_SAMPLES]):
        p = R * samples[i] + t
        n = R * sample_normals[i]
        keys[i] = -1
        if n[0] * p[0] + n[1] * p[1] + n[2] * p[2] < zero and p[2] > zero:  # facing the camera
            zc = wp.max(p[2], min_z)
            cu = wp.floor((p[0] / zc * fx + cx) / cell)
            cv = wp.floor((p[1] / zc * fy + cy) / cell)
            if cu >= zero and cu < wp.float64(cols) and cv >= zero and cv < wp.float64(rows):
                key = int(cv) * cols + int(cu)
                keys[i] = key
                zmin[key] = wp.min(zmin[key], p[2])
    has_hand, hand_w, hand_h = ints[_HAND], ints[_HAND_W], ints[_HAND_H]
    rcx, rfx, rcy, rfy, margin = hand_consts[4], hand_consts[5], hand_consts[6], hand_consts[7], hand_consts[8]
    min_z32 = wp.float32(min_z)
    count = wp.int32(0)
    for i in range(ints[_SAMPLES]):
        key = keys[i]
        if key < 0:
            continue
        p = R * samples[i] + t
        if not (p[2] <= zmin[key] + tolerance):
            continue
        if has_hand == 1:  # HandDepthLookup.covers, in float32
            x, y, z = wp.float32(p[0]), wp.float32(p[1]), wp.float32(p[2])
            z32 = wp.max(z, min_z32)
            iu = int(wp.rint(x / z32 * rfx + rcx))
            iv = int(wp.rint(y / z32 * rfy + rcy))
            if _hand_depth(hand_depth, iu, iv, hand_w, hand_h) < z + margin:
                continue
        visible[count] = i
        count += 1
    ints[_VISIBLE] = count


@wp.kernel
def _associate(points: wp.array(dtype=wp.vec3d), normals: wp.array(dtype=wp.vec3d), pose: wp.array(dtype=wp.float64),
               depth: wp.array(dtype=wp.float32), hand_consts: wp.array(dtype=wp.float32),
               hand_depth: wp.array(dtype=wp.float32), reals: wp.array(dtype=wp.float64),
               ints: wp.array(dtype=wp.int32), posed: wp.array2d(dtype=wp.float64),
               posed_normals: wp.array2d(dtype=wp.float64), targets: wp.array2d(dtype=wp.float64),
               ok: wp.array(dtype=wp.int32), pixels: wp.array(dtype=wp.int64)):
    """One thread: every point's posed position / normal, projective target and validity (the module's step 1)."""
    R = _pose_rotation(pose)
    t = wp.vec3d(pose[3], pose[7], pose[11])
    fx, fy, cx, cy = reals[_FX], reals[_FY], reals[_CX], reals[_CY]
    limit, min_z, margin = reals[_LIMIT], reals[_MIN_Z], reals[_MARGIN]
    width, height = wp.int64(ints[_WIDTH]), wp.int64(ints[_HEIGHT])
    has_hand, hand_w, hand_h = ints[_HAND], ints[_HAND_W], ints[_HAND_H]
    fcx, ffx, fcy, ffy = hand_consts[0], hand_consts[1], hand_consts[2], hand_consts[3]
    rcx, rfx, rcy, rfy = hand_consts[4], hand_consts[5], hand_consts[6], hand_consts[7]
    zero, one = wp.float64(0.0), wp.float64(1.0)
    for i in range(ints[_COUNT]):
        p = R * points[i] + t
        n = R * normals[i]
        zc = wp.max(p[2], min_z)
        u = wp.min(wp.max(wp.rint(p[0] / zc * fx + cx), wp.float64(-1.0)), limit)
        v = wp.min(wp.max(wp.rint(p[1] / zc * fy + cy), wp.float64(-1.0)), limit)
        ui, vi = wp.int64(u), wp.int64(v)
        inside = ui >= wp.int64(0) and ui < width and vi >= wp.int64(0) and vi < height and p[2] > zero
        pixel = vi * width + ui
        z = one
        good = 0
        if inside:
            zd = wp.float64(depth[pixel])
            if wp.isfinite(zd) and zd > zero:
                z = zd
                good = 1
        if good == 1 and has_hand == 1:  # HandDepthLookup.at_pixels of the full-image pixel, in float32
            iu = int(wp.rint((wp.float32(u) - fcx) / ffx * rfx + rcx))
            iv = int(wp.rint((wp.float32(v) - fcy) / ffy * rfy + rcy))
            if _hand_depth(hand_depth, iu, iv, hand_w, hand_h) < wp.float32(z + margin):
                good = 0
        for k in range(3):
            posed[k, i] = p[k]
            posed_normals[k, i] = n[k]
        targets[0, i] = (u - cx) / fx * z
        targets[1, i] = (v - cy) / fy * z
        targets[2, i] = z
        ok[i] = good
        pixels[i] = pixel


@wp.kernel
def _reduce(distances: wp.array(dtype=wp.float64), ok: wp.array(dtype=wp.int32), pixels: wp.array(dtype=wp.int64),
            posed_normals: wp.array2d(dtype=wp.float64), targets: wp.array2d(dtype=wp.float64),
            pose: wp.array(dtype=wp.float64), unseen: wp.array2d(dtype=wp.float64), reals: wp.array(dtype=wp.float64),
            ints: wp.array(dtype=wp.int32), stamps: wp.array(dtype=wp.int32), residuals: wp.array(dtype=wp.float64),
            rows: wp.array2d(dtype=wp.float64), weights: wp.array(dtype=wp.float64),
            sums: wp.array(dtype=wp.float64), counts: wp.array(dtype=wp.int32)):
    """One thread: the kept points' residuals, Jacobian rows, weights and normal equations (the module's step 3)."""
    t = wp.vec3d(pose[3], pose[7], pose[11])
    distance, scale = reals[_DISTANCE], reals[_SCALE]
    code, project, stamp = ints[_ROBUST], ints[_UNSEEN], ints[_STAMP]
    info = wp.spatial_matrixd()
    vector = wp.spatial_vectord()
    weight_sum = wp.float64(0.0)
    square_sum = wp.float64(0.0)
    kept = wp.int32(0)
    distinct = wp.int32(0)
    for i in range(ints[_COUNT]):
        r = distances[i]
        if ok[i] == 0 or not (wp.abs(r) < distance):
            continue
        n = wp.vec3d(posed_normals[0, i], posed_normals[1, i], posed_normals[2, i])
        a = wp.vec3d(targets[0, i], targets[1, i], targets[2, i]) - t
        c = wp.cross(a, n)
        j = wp.spatial_vectord(n[0], n[1], n[2], c[0], c[1], c[2])
        if project == 1:  # J^T <- P J^T with P = S (I - Y Y^T) S^-1 (unseen twists off)
            jp = wp.spatial_vectord()
            for m in range(6):
                s = wp.float64(0.0)
                for l in range(6):
                    s += unseen[m, l] * j[l]
                jp[m] = s
            j = jp
        w = _robust_weight(r, scale, code)
        wr = w * r
        info += wp.outer(j * w, j)
        vector += j * wr
        weight_sum += w
        square_sum += wr * r
        for m in range(6):
            rows[m, kept] = j[m]
        residuals[kept] = r
        weights[kept] = w
        if stamps[pixels[i]] != stamp:
            stamps[pixels[i]] = stamp
            distinct += 1
        kept += 1
    for m in range(6):
        for l in range(6):
            sums[m * 6 + l] = info[m, l]
        sums[36 + m] = vector[m]
    sums[42] = weight_sum
    sums[43] = square_sum
    counts[0] = kept
    counts[1] = distinct


def _view(array: np.ndarray, dtype) -> wp.array:
    """Zero-copy warp view of a C-contiguous numpy array (kept alive by the caller) as ``dtype`` (``wp.vec3d``: of
    an ``(N, 3)`` array)."""
    shape = array.shape[:-1] if dtype == wp.vec3d else array.shape
    return wp.array(ptr=array.ctypes.data, dtype=dtype, shape=shape, device="cpu", copy=False)


class SparseDepthPlan:
    """Buffers and recorded launches of the module's passes (see the module docstring).

    Args: samples, sample_normals: ``(S, 3)`` float64 [object frame] surface samples of the modality; capacity:
    the most points a frame keeps; projects_unseen: the Jacobian rows are multiplied by :attr:`unseen` ``(6, 6)``
    (written by the caller per iteration: the shape's unseen twists projected off).
    """

    def __init__(self, samples: np.ndarray, sample_normals: np.ndarray, capacity: int, projects_unseen: bool) -> None:
        cap = max(int(capacity), 1)
        self.samples = np.ascontiguousarray(samples, np.float64)
        self.sample_normals = np.ascontiguousarray(sample_normals, np.float64)
        self.points = np.zeros((cap, 3))
        self.normals = np.zeros((cap, 3))
        self.pose = np.zeros(12)
        self.reals = np.zeros(11)
        self.ints = np.zeros(13, np.int32)
        self.hand_consts = np.zeros(9, np.float32)
        self.keys = np.zeros(self.samples.shape[0], np.int32)
        self.visible = np.zeros(self.samples.shape[0], np.int32)
        self.posed = np.zeros((3, cap))
        self.posed_normals = np.zeros((3, cap))
        self.targets = np.zeros((3, cap))
        self.ok = np.zeros(cap, np.int32)
        self.pixels = np.zeros(cap, np.int64)
        self.distances = np.zeros(cap)
        self.unseen = np.eye(6)
        self.residuals = np.zeros(cap)
        self.rows = np.zeros((6, cap))
        self.weights = np.zeros(cap)
        self.sums = np.zeros(_SUMS)
        self.counts = np.zeros(2, np.int32)
        self.ints[_UNSEEN] = int(projects_unseen)
        self.ints[_SAMPLES] = self.samples.shape[0]
        self.reals[_MIN_Z] = MIN_DEPTH
        self._zmin = np.zeros(1)
        self._stamps = np.zeros(1, np.int32)
        self._no_hand = np.full(1, np.inf, np.float32)
        self._frame_arrays: tuple = ()  # the current frame's bound arrays (kept alive while bound)
        v = {name: _view(getattr(self, name), dtype) for name, dtype in (
            ("samples", wp.vec3d), ("sample_normals", wp.vec3d), ("points", wp.vec3d), ("normals", wp.vec3d),
            ("pose", wp.float64), ("reals", wp.float64), ("ints", wp.int32), ("hand_consts", wp.float32),
            ("keys", wp.int32), ("visible", wp.int32), ("posed", wp.float64), ("posed_normals", wp.float64),
            ("targets", wp.float64), ("ok", wp.int32), ("pixels", wp.int64), ("distances", wp.float64),
            ("unseen", wp.float64), ("residuals", wp.float64), ("rows", wp.float64), ("weights", wp.float64),
            ("sums", wp.float64), ("counts", wp.int32))}
        no_hand = _view(self._no_hand, wp.float32)
        self._choose = KeptLaunch(wp.launch(_choose, dim=1, inputs=[
            v["samples"], v["sample_normals"], v["pose"], v["reals"], v["ints"], v["hand_consts"], no_hand,
            _view(self._zmin, wp.float64), v["keys"], v["visible"]], device="cpu", record_cmd=True))
        self._associate = KeptLaunch(wp.launch(_associate, dim=1, inputs=[
            v["points"], v["normals"], v["pose"], no_hand, v["hand_consts"], no_hand, v["reals"], v["ints"],
            v["posed"], v["posed_normals"], v["targets"], v["ok"], v["pixels"]], device="cpu", record_cmd=True))
        self._reduce = KeptLaunch(wp.launch(_reduce, dim=1, inputs=[
            v["distances"], v["ok"], v["pixels"], v["posed_normals"], v["targets"], v["pose"], v["unseen"],
            v["reals"], v["ints"], _view(self._stamps, wp.int32), v["residuals"], v["rows"], v["weights"],
            v["sums"], v["counts"]], device="cpu", record_cmd=True))

    @property
    def capacity(self) -> int:
        """The most points a frame may hold."""
        return self.points.shape[0]

    def bind_frame(self, depth: np.ndarray, width: int, height: int, camera: tuple[float, float, float, float],
                   hand) -> None:
        """This frame's flat depth ``(H * W,)`` float32 [m], image size, ``camera = (fx, fy, cx, cy)`` [px] and the
        hand z-buffer (a :class:`~.hand_occlusion.HandDepthLookup`) or None. The arrays are read by reference until
        the next call."""
        self.ints[_WIDTH], self.ints[_HEIGHT] = width, height
        self.reals[_FX], self.reals[_FY], self.reals[_CX], self.reals[_CY] = camera
        self.reals[_LIMIT] = float(max(width, height))
        depth = np.ascontiguousarray(depth, np.float32)
        self._associate.set_param_at_index(3, _view(depth, wp.float32))
        if hand is None:
            self.ints[_HAND] = 0
            self._frame_arrays = (depth,)
        else:
            hand_depth = np.ascontiguousarray(hand.depth, np.float32)
            self.ints[_HAND], self.ints[_HAND_H], self.ints[_HAND_W] = 1, *hand_depth.shape
            self.hand_consts[:8] = (*hand.full, *hand.roi)
            view = _view(hand_depth.reshape(-1), wp.float32)
            self._choose.set_param_at_index(6, view)
            self._associate.set_param_at_index(5, view)
            self._frame_arrays = (depth, hand_depth)
        if self._stamps.shape[0] < depth.shape[0]:
            self._stamps = np.zeros(depth.shape[0], np.int32)
            self.ints[_STAMP] = 0
            self._reduce.set_param_at_index(9, _view(self._stamps, wp.int32))

    def choose(self, pose: np.ndarray, cell: float, tolerance: float, hand_margin: float) -> np.ndarray:
        """Step 0 at ``pose (4, 4)`` float64 with z-buffer cells of ``cell`` [px]: ascending indices ``(V,)`` int32
        of the visible samples the hand does not cover (a view, overwritten by the next call)."""
        cols = int(self.ints[_WIDTH] // cell) + 1
        rows = int(self.ints[_HEIGHT] // cell) + 1
        if self._zmin.shape[0] < cols * rows:
            self._zmin = np.zeros(cols * rows)
            self._choose.set_param_at_index(7, _view(self._zmin, wp.float64))
        self.pose[:] = pose[:3].reshape(-1)
        self.ints[_COLS], self.ints[_ROWS] = cols, rows
        self.reals[_CELL], self.reals[_TOLERANCE] = cell, tolerance
        self.hand_consts[8] = hand_margin
        self._choose.launch()
        return self.visible[:int(self.ints[_VISIBLE])]

    def select(self, indices: np.ndarray) -> None:
        """The frame's points: the samples ``indices (M,)`` (``M <= capacity``)."""
        m = indices.shape[0]
        np.take(self.samples, indices, 0, out=self.points[:m])
        np.take(self.sample_normals, indices, 0, out=self.normals[:m])
        self.ints[_COUNT] = m

    def associate(self, pose: np.ndarray, hand_margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step 1 at ``pose (4, 4)`` float64: coordinate rows ``(3, M)`` of the posed points, their normals and
        targets [m, camera frame] (views of the plan's buffers, overwritten by the next call)."""
        self.pose[:] = pose[:3].reshape(-1)
        self.reals[_MARGIN] = hand_margin
        self._associate.launch()
        m = int(self.ints[_COUNT])
        return self.posed[:, :m], self.posed_normals[:, :m], self.targets[:, :m]

    def reduce(self, distances: np.ndarray, considered: float, scale: float, robust: str) -> tuple[int, int]:
        """Step 3 with every point's residual ``distances (M,)`` [m] (of the pose of the last :meth:`associate`):
        ``(kept, distinct pixels)``; the kept points' residuals, rows ``(6, kept)``, weights and sums are in
        :attr:`residuals`, :attr:`rows`, :attr:`weights`, :attr:`sums`."""
        m = int(self.ints[_COUNT])
        self.distances[:m] = distances
        self.reals[_DISTANCE], self.reals[_SCALE] = considered, scale
        self.ints[_ROBUST] = ROBUST_CODES[robust]
        if self.ints[_STAMP] >= 2_000_000_000:  # stamps restart (never in practice)
            self._stamps[:] = 0
            self.ints[_STAMP] = 0
        self.ints[_STAMP] += 1
        self._reduce.launch()
        return int(self.counts[0]), int(self.counts[1])
