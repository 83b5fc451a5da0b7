"""Sparse photometric ("texture") modality: keyframe intensities at object surface points.

A keyframe (:meth:`TextureModality.take_keyframe`) stores, for up to ``max_points`` object surface points that are
visible at its pose and lie on a strong image gradient, their intensity in a reference image at every blur level:
the camera image (``image`` keyframe, taken on a trusted frame) or the object's own texture rendered at the pose
(``model`` keyframe, when the mesh has one: an absolute reference, which also corrects the start's error about an
axis nothing else observes). Per frame (:meth:`~TextureModality.begin`) the image around the object is turned into
luminance and its summed-area table (box means of any size in four lookups: the blur level of each Gauss-Newton
iteration, coarse to fine, evaluated only at the points' pixels); per iteration each point is posed, projected and
the box-filtered image sampled there (bilinear). Residual per point (intensity in [0, 1])::

    r = I_l(pi(R p_obj + t)) - m_l . [k, k n_x, k n_y, k n_z, 1]

with ``k`` the keyframe's intensity of the point at level ``l`` and ``m_l`` the frame's photometric model (gain,
shading along the camera-frame normal ``n`` at the frame's first linearisation, offset; fitted once per frame and
level, then held), and the closed-form Jacobian over the pose tangent ``(rho, phi)``::

    a = (g_u fx / z, g_v fy / z, -(g_u fx x + g_v fy y) / z^2),   dr/d rho = a^T,   dr/d phi = ((p - t) x a)^T

(``g`` the bilinear image gradient [1/px]), robust (IRLS) weights. Points turned away from the camera, outside the
sampled image or covered by the known hand (:class:`~.hand_occlusion.HandOcclusion`) are dropped. With depth the
block joins only where the shape has motions the depth cannot see (``with_depth: unseen_shapes``).

On the CPU the frame's table and every linearisation are kept warp launches (:class:`~.texture_kernel.TexturePlan`:
one compiled pass each instead of about 45 numpy calls); other devices take the torch code of :func:`_residuals`;
``test/test_texture_modality.py`` checks that both give the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.camera import MIN_DEPTH
from .hand_occlusion import HandOcclusion
from .observation import Observation
from .residuals import NormalEquations, ResidualBlock, robust_weights
from .scene import HandObjectScene
from .sparse_depth import visible_points_array
from .texture_kernel import TexturePlan
from .texture_settings import TextureSettings

__all__ = ["Keyframe", "TextureModality", "box_means", "luminance", "photometric_jacobian", "sample_bilinear",
           "sample_box_bilinear", "summed_area_table", "surface_candidates"]

_F64 = torch.float64
_LUMA = (0.299, 0.587, 0.114)
_NEXT, _AFTER = [1, 2, 0], [2, 0, 1]  # (a x b)_i = a_next(i) b_after(i) - a_after(i) b_next(i)


def luminance(rgb):
    """``(H, W)`` float64 luminance in [0, 1] of ``rgb (H, W, 3)`` (uint8 or float in [0, 1]; numpy or torch; float64
    so that the blur's running sums give the same values on every path)."""
    scale = 1.0 / 255.0 if rgb.dtype in (np.uint8, torch.uint8) else 1.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if isinstance(rgb, torch.Tensor):
        r, g, b = r.double(), g.double(), b.double()
    elif rgb.dtype != np.uint8:  # uint8 times a Python float is already float64 (the same values, no copies)
        r, g, b = r.astype(np.float64), g.astype(np.float64), b.astype(np.float64)
    return (r * (_LUMA[0] * scale) + g * (_LUMA[1] * scale) + b * (_LUMA[2] * scale))


def summed_area_table(image):
    """``(H + 1, W + 1)`` float64 ``S[i, j] = sum(image[:i, :j])`` of ``image (H, W)`` (numpy or torch): any box mean
    of the image in four lookups."""
    if isinstance(image, torch.Tensor):
        return torch.nn.functional.pad(image.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    sat = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
    np.cumsum(image, 0, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], 1, out=sat[1:, 1:])
    return sat


def box_means(sat, radius: int, px, py):
    """Mean of the image of ``sat`` (:func:`summed_area_table`) over the ``2 radius + 1`` square around integer pixels
    ``px``, ``py`` (any equal shapes; int64 / long), cut to the image at its edges."""
    xp = torch if isinstance(sat, torch.Tensor) else np
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    x0, x1 = xp.clip(px - radius, 0, w), xp.clip(px + radius + 1, 0, w)
    y0, y1 = xp.clip(py - radius, 0, h), xp.clip(py + radius + 1, 0, h)
    flat = sat.reshape(-1)
    top, bottom = y0 * (w + 1), y1 * (w + 1)
    total = flat[bottom + x1] - flat[top + x1] - flat[bottom + x0] + flat[top + x0]
    return total / ((x1 - x0) * (y1 - y0))


def sample_box_bilinear(sat, radius: int, x, y):
    """:func:`sample_bilinear` of the image of ``sat`` box-filtered with ``radius`` (the filter evaluated only at the
    four pixels around each position: a few hundred points never pay for a whole blurred image). Returns
    ``(values, d/dx, d/dy, inside)`` ``(K,)``; ``inside``: all four pixels lie in the image."""
    xp = torch if isinstance(sat, torch.Tensor) else np
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    if xp is np:
        return _sample_box_bilinear_xy(sat, radius, np.stack((x, y)))
    ix, iy = xp.floor(x), xp.floor(y)
    fx, fy = x - ix, y - iy
    inside = (ix >= 0) & (ix <= w - 2) & (iy >= 0) & (iy <= h - 2)
    ix, iy = xp.clip(ix, 0, w - 2).long(), xp.clip(iy, 0, h - 2).long()
    corners = box_means(sat, radius, xp.stack((ix, ix + 1, ix, ix + 1)), xp.stack((iy, iy, iy + 1, iy + 1)))
    i00, i01, i10, i11 = corners[0], corners[1], corners[2], corners[3]
    return _interpolated(i00, i01, i10, i11, fx, fy, inside)


def _interpolated(i00, i01, i10, i11, fx, fy, inside):
    """Bilinear value and its x / y derivatives from the four corner values ``(K,)`` and fractions ``fx, fy``."""
    top = i00 + fx * (i01 - i00)
    bottom = i10 + fx * (i11 - i10)
    return top + fy * (bottom - top), (1 - fy) * (i01 - i00) + fy * (i11 - i10), bottom - top, inside


def _sample_box_bilinear_xy(sat: np.ndarray, radius: int, xy: np.ndarray):
    """:func:`sample_box_bilinear` (numpy) of positions ``xy (2, K)`` (x; y): the same arithmetic per value with the
    two coordinates in one array (half the calls)."""
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    corner = np.floor(xy)
    frac = xy - corner
    last = np.array([[w - 2], [h - 2]])
    inside = ((corner >= 0) & (corner <= last)).all(0)
    corner = _clamp(corner, 0, last).astype(np.int64)
    i00, i01, i10, i11 = _corner_box_means(sat, radius, corner)
    fx, fy = frac[0], frac[1]
    return _interpolated(i00, i01, i10, i11, fx, fy, inside)


def _clamp(values: np.ndarray, low, high) -> np.ndarray:
    """``np.clip`` of a numpy array as two ufunc calls (the same values, without ``np.clip``'s per-call checks)."""
    return np.minimum(np.maximum(values, low), high)


def _corner_box_means(sat: np.ndarray, radius: int, corner: np.ndarray):
    """:func:`box_means` (numpy) at the four pixels ``(ix + {0, 1}, iy + {0, 1})`` around each ``corner = (ix; iy)
    (2, K)`` int64, as ``(i00, i01, i10, i11)`` ``(K,)``: the same arithmetic per value as :func:`box_means` in fewer
    calls (the eight box edges of each point clipped at once, the sixteen table entries gathered in one ``take``)."""
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    offsets = np.array([[-radius], [1 - radius], [radius + 1], [radius + 2]])  # low edges of +0, +1; high edges
    edges = _clamp(corner[:, None, :] + offsets, 0, np.array([[[w]], [[h]]]))  # (x; y, 4 edges, K)
    starts = edges[1] * (w + 1)  # (4, K) table offsets of the rows: top 0, top 1, bottom 0, bottom 1
    s = sat.reshape(-1).take(starts[:, None, :] + edges[0])  # (4 rows, 4 columns, K)
    size = edges[:, 2:] - edges[:, :2]  # (x; y, 2, K) box widths and heights, exact in int64
    means = (s[2:, 2:] - s[:2, 2:] - s[2:, :2] + s[:2, :2]) / (size[1][:, None] * size[0])  # (2 rows, 2 columns, K)
    return means[0, 0], means[0, 1], means[1, 0], means[1, 1]


def sample_bilinear(image, x, y):
    """Bilinear samples of ``image (H, W)`` at continuous pixel positions ``x``, ``y (K,)`` (pixel centres at
    integers) and the derivatives of that interpolation: ``(values, d/dx, d/dy, inside)`` ``(K,)`` each; outside
    (``inside`` False) the values read the nearest border cell. Numpy or torch alike."""
    return sample_box_bilinear(summed_area_table(image), 0, x, y)


def photometric_jacobian(points, translation, grad_u, grad_v, focal):
    """``(6, K)`` rows ``J^T`` of ``d I(pi(p)) / d (rho, phi)`` for camera-frame points ``points (3, K)`` [m] rigidly
    attached to the object (origin ``translation (3, 1)`` [m]) and the image gradient ``grad_u, grad_v (K,)``
    [1/px] at their projections; ``focal = (fx, fy)`` [px]. Numpy or torch alike."""
    xp = torch if isinstance(points, torch.Tensor) else np
    x, y, z = points[0], points[1], points[2]
    gu, gv = grad_u * focal[0] / z, grad_v * focal[1] / z
    a = xp.stack((gu, gv, -(gu * x + gv * y) / z))
    lever = points - translation
    return xp.concatenate((a, lever[_NEXT] * a[_AFTER] - lever[_AFTER] * a[_NEXT]), 0)


def surface_candidates(verts: np.ndarray, faces: np.ndarray, count: int, uv: np.ndarray | None = None,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``count`` area-weighted surface points of a mesh (deterministic): ``points (count, 3)``, unit face normals
    ``(count, 3)`` [object frame] and, given per-vertex ``uv (V, 2)``, their texture coordinates ``(count, 2)``."""
    v, f = np.asarray(verts, np.float64), np.asarray(faces, np.int64)
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area = np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(f), size=int(count), p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    bary = np.stack((1 - r1, r1 * (1 - r2), r1 * r2), 1)
    points = np.einsum("kj,kjc->kc", bary, v[f[face]])
    normals = cross[face] / np.maximum(area[face], 1e-30)[:, None]
    uvs = None if uv is None else np.einsum("kj,kjc->kc", bary, np.asarray(uv, np.float64)[f[face]])
    return points, normals, uvs


@dataclass(frozen=True)
class Keyframe:
    """What a keyframe stores: object-frame points and normals ``(3, K)`` float64 [m], their reference intensity per
    blur level ``(L, K)``, the keyframe's pose ``(4, 4)`` and its source (``"image"`` or ``"model"``)."""

    points: np.ndarray
    normals: np.ndarray
    intensities: np.ndarray
    pose: np.ndarray
    source: str


@dataclass
class _Frame:
    """One frame's sampling state: the crop's origin ``(x0, y0)`` [px] in the full image, the camera's focal lengths
    and principal point, and either the CPU plan (:class:`~.texture_kernel.TexturePlan`: table, models and hand
    z-buffer in its buffers) or, for the torch path, the summed-area table ``(h + 1, w + 1)`` of the luminance around
    the keyframe's points, the predicted intensities per level (photometric model fitted on first use) and the hand
    occlusion."""

    origin: tuple[int, int]
    focal: tuple[float, float]
    centre: tuple[float, float]
    plan: TexturePlan | None = None
    sat: torch.Tensor | None = None
    models: dict | None = None
    hand: HandOcclusion | None = None


class TextureModality:
    """Photometric observation of the object pose against a keyframe (see the module docstring)."""

    name = "texture"
    relinearize = True
    #: sample and linearise on the CPU by the compiled passes (the torch path gives the same values; other devices
    #: take it)
    use_arrays = True

    def __init__(self, scene: HandObjectScene, settings: TextureSettings,
                 unseen: tuple[torch.Tensor, float] | None = None) -> None:
        self.scene = scene
        self.settings = settings
        obj = scene.object
        uv = obj.uv.detach().cpu().numpy() if obj.uv is not None and obj.texture is not None else None
        points, normals, self._uv = surface_candidates(obj.verts.detach().cpu().numpy(),
                                                       obj.faces.detach().cpu().numpy(), settings.candidates, uv)
        self._points = np.ascontiguousarray(points.T)  # (3, S) object frame
        self._normals = np.ascontiguousarray(normals.T)
        tri = obj.verts.detach().to("cpu", _F64).numpy()[obj.faces.cpu().numpy()]  # (F, 3, 3)
        area = 0.5 * float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
        self._spacing = math.sqrt(area / max(settings.candidates, 1))
        self._texture = luminance(obj.texture.detach().cpu().numpy()) if self._uv is not None else None
        #: ``(6, k)`` object-frame twists depth cannot see and the object's radius [m] (from the sparse depth)
        self.unseen = None if unseen is None else (unseen[0].detach().to("cpu", _F64).numpy(), float(unseen[1]))
        self.keyframe: Keyframe | None = None
        self._frame: _Frame | None = None
        self._min_facing = settings.min_facing  # this frame's (begin: with or without depth)
        self._plan: TexturePlan | None = None  # the CPU path's buffers and launches (made on first use)
        #: of the last linearisation: the fraction of the keyframe's points usable, and of those agreeing
        self.overlap = 0.0
        self.inliers = 0.0

    @property
    def has_model_texture(self) -> bool:
        """Whether the object mesh carries a texture (``model`` keyframes possible)."""
        return self._texture is not None

    def reset(self) -> None:
        """Forget the keyframe (a new track, a lost one)."""
        self.keyframe = None
        self._frame = None

    # ------------------------------------------------------------------------------------------------ keyframes
    def take_keyframe(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
                      source: str = "image", with_depth: bool = True) -> bool:
        """Store the points visible at ``object2camera (4, 4)`` with a strong gradient and their intensities in the
        camera image (``source="image"``) or in the object's texture rendered at that pose (``"model"``); False
        (keyframe unchanged) when fewer than ``min_points`` qualify. ``with_depth``: the frame has depth (which
        facing limit applies: ``min_facing`` or ``min_facing_without_depth``)."""
        s = self.settings
        pose = object2camera.detach().to("cpu", _F64).numpy()
        cam = obs.camera
        (fx, _, cx), (_, fy, cy), _ = cam.K.tolist()
        width, height = int(cam.width), int(cam.height)
        R, t = pose[:3, :3], pose[:3, 3:]
        p = R @ self._points + t
        n = R @ self._normals
        cell = max(4.0, 2.5 * self._spacing * fx / max(float(pose[2, 3]), 0.05))
        idx = visible_points_array(p, n, np.array([[fx], [fy]]), np.array([[cx], [cy]]), width, height, cell, 0.01)
        facing = -(n.take(idx, 1) * p.take(idx, 1)).sum(0) / np.linalg.norm(p.take(idx, 1), axis=0)
        idx = idx[facing >= self.facing_limit(with_depth)]
        if source == "image" and occlusion is not None and idx.size:
            idx = idx[~occlusion.lookup().covers(p.take(idx, 1).T, s.hand_margin)]
        if idx.size < s.min_points:
            return False
        q = p.take(idx, 1)
        u = q[0] / np.maximum(q[2], MIN_DEPTH) * fx + cx
        v = q[1] / np.maximum(q[2], MIN_DEPTH) * fy + cy
        margin = max(s.blur_radii) + 2
        box = (max(int(u.min()) - margin, 0), max(int(v.min()) - margin, 0),
               min(int(u.max()) + margin + 2, width), min(int(v.max()) + margin + 2, height))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            return False
        if source == "model":
            if self._texture is None:
                return False
            crop = self._rendered_albedo(obs, pose, box)
        else:
            crop = luminance(obs.frame.rgb[box[1]:box[3], box[0]:box[2]].cpu().numpy())
        x, y = u - box[0], v - box[1]
        sat = summed_area_table(crop)
        values, strength, ok = [], np.zeros(idx.size), np.ones(idx.size, bool)
        for radius in s.blur_radii:
            val, gx, gy, inside = sample_box_bilinear(sat, radius, x, y)
            values.append(val)
            strength += np.hypot(gx, gy) / len(s.blur_radii)
            ok &= inside
        ok &= strength >= s.min_gradient
        keep = np.flatnonzero(ok)
        if keep.size < s.min_points:
            return False
        if keep.size > s.max_points:
            keep = keep[np.argsort(-strength[keep], kind="stable")[:s.max_points]]
            keep.sort()
        chosen = idx[keep]
        self.keyframe = Keyframe(np.ascontiguousarray(self._points[:, chosen]),
                                 np.ascontiguousarray(self._normals[:, chosen]),
                                 np.stack([val[keep] for val in values]).astype(np.float64), pose.copy(), source)
        return True

    def _rendered_albedo(self, obs: Observation, pose: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """``(h, w)`` float64 luminance of the object's texture rendered at ``pose (4, 4)`` (nearest face per pixel,
        perspective-correct texture coordinates, no shading) over the full-image pixels of ``box``; pixels off the
        object get the mean albedo of those on it."""
        x0, y0, x1, y1 = box
        camera = obs.camera.crop_and_resize((float(x0), float(y0), float(x1), float(y1)), x1 - x0, y1 - y0)
        obj = self.scene.object
        T = torch.from_numpy(pose).to(obj.verts)
        verts = obj.verts @ T[:3, :3].T + T[:3, 3]
        with torch.no_grad():
            out = self.scene.renderer.hard(verts[None], obj.faces, camera.to(verts.device, verts.dtype))
        face = out.face[0].cpu().numpy()
        bary = out.bary[0].detach().cpu().numpy().astype(np.float64)
        on = face >= 0
        uv = np.asarray(obj.uv.detach().cpu().numpy(), np.float64)[obj.faces.cpu().numpy()[face[on]]]  # (N, 3, 2)
        uv = np.einsum("nj,njc->nc", bary[on], uv)
        tex = self._texture
        th, tw = tex.shape
        values, _, _, _ = sample_bilinear(tex, uv[:, 0] * tw - 0.5, (1 - uv[:, 1]) * th - 0.5)
        crop = np.full(face.shape, float(values.mean()) if values.size else 0.5)
        crop[on] = values
        return crop

    def keyframe_due(self) -> bool:
        """Whether the last linearisation asks for a new keyframe: too few of the keyframe's points usable or
        agreeing (``min_overlap``, ``min_inliers``)."""
        s = self.settings
        return self.keyframe is None or self.overlap < s.min_overlap or self.inliers < s.min_inliers

    def turned_since_keyframe(self, object2camera: torch.Tensor) -> float:
        """Rotation [rad] of the object relative to the camera since the keyframe (inf without one)."""
        if self.keyframe is None:
            return math.inf
        R = object2camera.detach().to("cpu", _F64).numpy()[:3, :3] @ self.keyframe.pose[:3, :3].T
        return math.acos(max(-1.0, min(1.0, (float(np.trace(R)) - 1) / 2)))

    # ------------------------------------------------------------------------------------------------ per frame
    def begin(self, obs: Observation, object2camera: torch.Tensor, occlusion: HandOcclusion | None,
              with_depth: bool, join: bool = False) -> bool:
        """Prepare this frame at the predicted ``object2camera (4, 4)``: the luminance around the keyframe's points,
        the hand test; False without a keyframe or when the block does not join a frame with depth
        (:meth:`joins`) and ``join`` (the caller's own reason to observe this frame) is off."""
        self._frame = None
        kf, s = self.keyframe, self.settings
        self._min_facing = self.facing_limit(with_depth)
        if kf is None or not (join or self.joins(with_depth)):
            return False
        cam = obs.camera
        (fx, _, cx), (_, fy, cy), _ = cam.K.tolist()
        width, height = int(cam.width), int(cam.height)
        pose = object2camera.detach().to("cpu", _F64).numpy()
        margin = max(s.blur_radii) + 2 + s.search_margin
        rgb = obs.frame.rgb
        if self.use_arrays and rgb.device.type == self.scene.device.type == "cpu" and rgb.dtype == torch.uint8:
            plan = self._compiled_plan()
            if plan.keyframe is not kf:
                plan.load_keyframe(kf)
            origin = plan.prepare(rgb.numpy(), pose, (fx, fy, cx, cy), margin,
                                  occlusion.lookup() if occlusion is not None else None)
            if origin is None:
                return False
            self._frame = _Frame(origin, (fx, fy), (cx, cy), plan)
            return True
        p = pose[:3, :3] @ kf.points + pose[:3, 3:]
        z = np.maximum(p[2], MIN_DEPTH)
        u, v = p[0] / z * fx + cx, p[1] / z * fy + cy
        x0, y0 = max(int(u.min()) - margin, 0), max(int(v.min()) - margin, 0)
        x1, y1 = min(int(u.max()) + margin + 2, width), min(int(v.max()) + margin + 2, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return False
        sat = summed_area_table(luminance(obs.frame.rgb[y0:y1, x0:x1].to(self.scene.device)))
        self._frame = _Frame((x0, y0), (fx, fy), (cx, cy), sat=sat, models={}, hand=occlusion)
        return True

    def _compiled_plan(self) -> TexturePlan:
        """The CPU path's :class:`~.texture_kernel.TexturePlan` (made once; its kernels compile on first use)."""
        if self._plan is None:
            scale = 1.0 / 255.0
            self._plan = TexturePlan(self.settings.max_points, len(self.settings.blur_radii),
                                     (_LUMA[0] * scale, _LUMA[1] * scale, _LUMA[2] * scale))
        return self._plan

    def facing_limit(self, with_depth: bool) -> float:
        """The facing limit of a frame with or without depth: ``min_facing_without_depth`` for the shapes the block
        joins without depth by ``without_depth`` (grazing points of a surface of revolution), else ``min_facing`` (a
        frame the filter brings the block into for its own reason, e.g. a box's face-on outline)."""
        s = self.settings
        return s.min_facing_without_depth if not with_depth and self.joins(False) else s.min_facing

    def joins(self, with_depth: bool) -> bool:
        """Whether the block observes a frame with or without depth (``with_depth`` / ``without_depth`` settings:
        ``unseen_shapes`` only for a shape whose motions the depth does not all see)."""
        mode = self.settings.with_depth if with_depth else self.settings.without_depth
        if mode == "always":
            return True
        return mode == "unseen_shapes" and self.unseen is not None and self.unseen[0].shape[1] > 0

    def linearize(self, object2camera: torch.Tensor, iteration: int) -> ResidualBlock | None:
        """``(r, J, w)`` at ``object2camera (4, 4)`` at the blur level of ``iteration`` (the torch path unless the
        frame was prepared for the compiled passes)."""
        if self._frame is not None and self._frame.plan is not None:
            ne = self.normal_equations(object2camera.detach().to("cpu", _F64).numpy(), iteration)
            if ne is None:
                return None
            return ResidualBlock(self.name, torch.from_numpy(ne.residual), torch.from_numpy(ne.rows.T.copy()),
                                 torch.from_numpy(ne.weight), ne.std, ne.noise_floor, ne.correlation)
        found = self._linearized(object2camera, iteration)
        if found is None:
            return None
        r, rows, w, std, floor, corr = found
        return ResidualBlock(self.name, r, rows.T.contiguous(), w, std, floor, corr)

    def normal_equations(self, object2camera: np.ndarray, iteration: int) -> NormalEquations | None:
        """:meth:`linearize` at ``object2camera (4, 4)`` float64 numpy as the iterated update reads it: on the CPU
        by the frame's compiled pass, elsewhere from the torch path's values."""
        fr, s = self._frame, self.settings
        if fr is None or self.keyframe is None:
            return None
        level = min(iteration, len(s.blur_radii) - 1)
        if fr.plan is None:
            found = self._linearized(torch.from_numpy(object2camera), iteration)
            if found is None:
                return None
            r, rows, w, std, floor, corr = found
            r, rows, w = (a.detach().to("cpu", _F64).numpy() for a in (r, rows, w))
            return NormalEquations.build(self.name, r, np.ascontiguousarray(rows), w, std, floor, corr)
        plan = fr.plan
        kept, inliers = plan.linearize(object2camera, level, s.blur_radii[level], self._min_facing, s.hand_margin,
                                       s.robust_scales[min(level, len(s.robust_scales) - 1)], s.robust)
        self.overlap = kept / max(self.keyframe.points.shape[1], 1)
        if kept < s.min_points:
            self.inliers = 0.0
            return None
        self.inliers = inliers / kept
        sums = plan.sums.copy()
        return NormalEquations(self.name, plan.residuals[:kept].copy(), plan.rows[:, :kept].copy(),
                               plan.weights[:kept].copy(), s.standard_deviations[min(level, len(s.standard_deviations)
                                                                                     - 1)],
                               s.noise_floor, s.correlation, sums[:36].reshape(6, 6), sums[36:42], float(sums[42]),
                               float(sums[43]))

    def _linearized(self, object2camera: torch.Tensor, iteration: int):
        """The torch path's ``(r, rows (6, k), w, std, noise floor, correlation)`` at ``object2camera (4, 4)``."""
        fr, kf, s = self._frame, self.keyframe, self.settings
        if fr is None or kf is None:
            return None
        level = min(iteration, len(s.blur_radii) - 1)
        device = self.scene.device
        pose = torch.as_tensor(object2camera).to(device, _F64)
        points, normals, refs = (torch.from_numpy(a).to(device) for a in
                                 (kf.points, kf.normals, kf.intensities[level]))
        intensity, rows, n_cam, valid = _residuals(fr, s.blur_radii[level], pose, points, normals, self._min_facing,
                                                   s.hand_margin)
        if level not in fr.models:  # the photometric model of this level: fitted once per frame, then held
            fr.models[level] = _photometric_prediction(intensity, refs, n_cam, valid)
        predicted = fr.models[level]
        keep = torch.nonzero(valid)[:, 0]
        self.overlap = float(keep.shape[0]) / max(int(refs.shape[0]), 1)
        if keep.shape[0] < s.min_points:
            self.inliers = 0.0
            return None
        r = (intensity - predicted)[keep]
        rows = rows[:, keep]
        scale = s.robust_scales[min(level, len(s.robust_scales) - 1)]
        w = robust_weights(r, scale, s.robust)
        self.inliers = float((w > 0.5).sum()) / max(int(keep.shape[0]), 1)
        std = s.standard_deviations[min(level, len(s.standard_deviations) - 1)]
        return r, rows, w, std, s.noise_floor, s.correlation


def _residuals(fr: _Frame, radius: int, pose: torch.Tensor, points: torch.Tensor, normals: torch.Tensor,
               min_facing: float, hand_margin: float):
    """Torch path: intensities ``(K,)`` at the projections of the keyframe's points at ``pose (4, 4)``, Jacobian rows
    ``(6, K)``, camera-frame normals ``(3, K)`` and which points are usable ``(K,)`` (facing, inside the crop, not
    hand)."""
    R, t = pose[:3, :3], pose[:3, 3:]
    p = R @ points + t
    n = R @ normals
    z = p[2]
    facing = -(n * p).sum(0) / torch.sqrt((p * p).sum(0))
    zc = z.clamp_min(MIN_DEPTH)
    u = p[0] / zc * fr.focal[0] + fr.centre[0]
    v = p[1] / zc * fr.focal[1] + fr.centre[1]
    values, gx, gy, inside = sample_box_bilinear(fr.sat, radius, u - fr.origin[0], v - fr.origin[1])
    valid = inside & (facing >= min_facing) & (z > MIN_DEPTH)
    if fr.hand is not None:
        uv = torch.stack((u, v), -1).round()
        valid &= fr.hand.depth_at_pixels(uv) >= (z + hand_margin).to(fr.hand.depth)
    rows = photometric_jacobian(p, t, gx, gy, fr.focal)
    return values, rows, n, valid


def _photometric_prediction(intensity: torch.Tensor, refs: torch.Tensor, n_cam: torch.Tensor, valid: torch.Tensor):
    """``(K,)`` predicted intensities ``m . [k, k n_x, k n_y, k n_z, 1]`` of the keyframe's ``refs (K,)`` with the
    camera-frame normals ``n_cam (3, K)``, ``m (5,)`` fitted to ``intensity (K,)`` over the ``valid`` points (least
    squares, ridge towards ``I = k``: gain 1, no shading, no offset, so that few or flat points keep the identity;
    the compiled pass of :mod:`.texture_kernel` fits the same)."""
    v = valid.to(_F64)
    F = torch.stack((refs, refs * n_cam[0], refs * n_cam[1], refs * n_cam[2], torch.ones_like(refs)))
    Fv = F * v
    A = Fv @ F.T
    b = Fv @ torch.where(valid, intensity, 0.0 * intensity)
    ridge = 1e-2 * (float(torch.trace(A)) / 5 + 1e-6)
    prior = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=_F64, device=A.device)
    m = torch.linalg.solve(A + ridge * torch.eye(5, dtype=_F64, device=A.device), b + ridge * prior)
    return m @ F
