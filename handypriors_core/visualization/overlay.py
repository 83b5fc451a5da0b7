"""Overlay images: hand and object outlines, object axes, contacts and text drawn over the input with OpenCV.

The one drawing module of the project: the ROS node (``~/overlay``, via :mod:`handypriors_ros.overlay`) and the
command line (``handypriors track --video / --out-bag``, the demo's video) both draw with it.

Silhouettes are *projected*, not rendered: mesh vertices in the camera frame are projected with the camera's
intrinsics (and its plumb_bob / rational_polynomial distortion, through ``cv2.projectPoints``) and filled into
a mask, whose outer contours are drawn over the image. Two fill modes:

- :func:`triangles_mask`: every triangle filled (exact silhouette of any mesh; cost grows with the face count);
- :func:`convex_groups_mask`: the convex hull of each vertex group filled, e.g. one group per link of a robot
  hand made of convex primitives (exact for convex links, a few hulls instead of thousands of triangles).

Occlusion between hand and object is not resolved (both outlines are drawn whole), which is what an overlay
for checking the estimate wants. A hard render (instance map from the renderer's z-buffer) can be outlined the
same way with :func:`instance_masks`; :func:`instance_overlay` is the command line's overlay of such a render
(outlines coloured by tracking status, object axes, contact dots, a label).

Inputs are numpy arrays or torch tensors; images are RGB ``(H, W, 3) uint8``. Nothing here imports rclpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from handypriors_core.errors import InvalidValueError, ShapeError

__all__ = [
    "CONTACT_HIGH",
    "CONTACT_LOW",
    "HAND_COLOUR",
    "OBJECT_COLOUR",
    "convex_groups_mask",
    "draw_outline",
    "draw_points",
    "draw_text",
    "instance_masks",
    "instance_overlay",
    "project_points",
    "tracking_overlay",
    "triangles_mask",
]

#: Outline colours (RGB).
OBJECT_COLOUR = (40, 230, 60)
HAND_COLOUR = (60, 140, 255)
#: Contact point colours at contact value 0 and 1 (RGB), linearly blended in between.
CONTACT_LOW = (255, 230, 0)
CONTACT_HIGH = (255, 0, 60)

_NEAR = 1e-4  # [m] points closer to the camera plane than this are not projected
_SHIFT = 4  # sub-pixel bits of the OpenCV drawing calls


def _array(values: Any, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().to("cpu").numpy()
    out = np.asarray(values, dtype=dtype)
    if out.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, out.shape)):
        pretty = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(f"Expected {name} to have shape {pretty}; got {out.shape}")
    return out


def project_points(points: Any, K: Any, D: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points ``(N, 3)`` [m] -> pixels ``(N, 2)`` (OpenCV convention) and ``valid (N,)``.

    ``K (3, 3)``; ``D``: distortion coefficients (4, 5, 8, 12 or 14 as OpenCV takes them; plumb_bob is
    ``k1 k2 p1 p2 k3``), None or all zero = none. Points with ``z <= 0.1 mm`` or non-finite are invalid
    (their pixels are NaN).
    """
    p = _array(points, "points", (None, 3))
    K = _array(K, "K", (3, 3))
    valid = np.isfinite(p).all(1) & (p[:, 2] > _NEAR)
    uv = np.full((p.shape[0], 2), np.nan)
    if not valid.any():
        return uv, valid
    q = p[valid]
    dist = None if D is None else np.asarray(D.detach().cpu().numpy() if hasattr(D, "detach") else D, np.float64)
    if dist is None or dist.size == 0 or not np.any(dist):
        x = q[:, :2] / q[:, 2:3]
        uv[valid] = x @ K[:2, :2].T + K[:2, 2]
    else:
        projected, _ = cv2.projectPoints(q.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, dist.reshape(-1))
        uv[valid] = projected.reshape(-1, 2)
    return uv, valid


def _fixed(uv: np.ndarray) -> np.ndarray:
    """Pixels -> OpenCV fixed-point coordinates (``_SHIFT`` fractional bits), clipped to a sane range."""
    return np.clip(np.round(uv * (1 << _SHIFT)), -(2**26), 2**26).astype(np.int32)


def triangles_mask(uv: np.ndarray, valid: np.ndarray, faces: Any, height: int, width: int) -> np.ndarray:
    """``uint8 (H, W)`` mask (255 inside) of the union of the projected triangles ``faces (F, 3)``.

    Triangles with an invalid corner, or entirely outside the image, are skipped.
    """
    f = _array(faces, "faces", (None, 3), dtype=np.int64)
    mask = np.zeros((height, width), np.uint8)
    if f.size == 0:
        return mask
    if f.min() < 0 or f.max() >= uv.shape[0]:
        raise InvalidValueError(f"faces index vertices outside 0 .. {uv.shape[0] - 1}")
    keep = valid[f].all(1)
    tri = uv[f[keep]]  # (F', 3, 2)
    lo, hi = tri.min(1), tri.max(1)
    keep = (hi[:, 0] >= -1) & (lo[:, 0] <= width) & (hi[:, 1] >= -1) & (lo[:, 1] <= height)
    # a triangle smaller than a pixel still marks the pixel it falls in (fillConvexPoly draws its outline)
    for corners in _fixed(tri[keep]):  # fillPoly of many polygons XORs overlaps, so one call per triangle
        cv2.fillConvexPoly(mask, corners, 255, cv2.LINE_8, _SHIFT)
    return mask


def convex_groups_mask(uv: np.ndarray, valid: np.ndarray, groups: Any, height: int, width: int) -> np.ndarray:
    """``uint8 (H, W)`` mask of the union of the convex hulls of the vertex groups ``groups (V,)`` (int ids).

    A group with an invalid vertex (behind the camera) is skipped.
    """
    g = _array(groups, "groups", (uv.shape[0],), dtype=np.int64)
    mask = np.zeros((height, width), np.uint8)
    bad = set(np.unique(g[~valid]).tolist())
    order = np.argsort(g, kind="stable")
    ids, starts = np.unique(g[order], return_index=True)
    bounds = list(starts) + [len(order)]
    for k, group in enumerate(ids.tolist()):
        if group in bad:
            continue
        pts = uv[order[bounds[k]:bounds[k + 1]]]
        if len(pts) < 3:
            continue
        hull = cv2.convexHull(_fixed(pts).reshape(-1, 1, 2))
        cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, _SHIFT)
    return mask


def instance_masks(instance: Any, ids: Sequence[int]) -> list[np.ndarray]:
    """Masks ``uint8 (H, W)`` of each id in an instance map ``(H, W)`` (e.g. a hard render, -1 = background)."""
    inst = _array(instance, "instance", (None, None), dtype=np.int64)
    return [np.where(inst == i, 255, 0).astype(np.uint8) for i in ids]


def draw_outline(image: np.ndarray, mask: np.ndarray, colour: Sequence[int], thickness: int = 2,
                 fill_alpha: float = 0.0) -> np.ndarray:
    """Draw the outer contours of ``mask`` onto ``image`` (in place; returned), optionally tinting the inside."""
    if fill_alpha > 0:
        inside = mask > 0
        tint = np.asarray(colour, np.float32)
        image[inside] = ((1 - fill_alpha) * image[inside] + fill_alpha * tint).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, tuple(int(c) for c in colour), thickness, cv2.LINE_AA)
    return image


def draw_points(image: np.ndarray, uv: np.ndarray, values: np.ndarray | None = None, radius: int = 3) -> np.ndarray:
    """Filled circles at pixels ``uv (N, 2)``, coloured from :data:`CONTACT_LOW` (0) to :data:`CONTACT_HIGH` (1)."""
    values = np.ones(len(uv)) if values is None else np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    low, high = np.asarray(CONTACT_LOW, np.float64), np.asarray(CONTACT_HIGH, np.float64)
    for (u, v), t in zip(uv, values):
        if np.isfinite(u) and np.isfinite(v):
            colour = tuple(int(c) for c in (1 - t) * low + t * high)
            cv2.circle(image, (round(float(u) * (1 << _SHIFT)), round(float(v) * (1 << _SHIFT))),
                       radius << _SHIFT, colour, -1, cv2.LINE_AA, _SHIFT)
    return image


def draw_text(image: np.ndarray, lines: Sequence[str], colour: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Text lines in the top-left corner, on a dark band, scaled to the image size."""
    if not lines:
        return image
    height = image.shape[0]
    scale = max(0.3, height / 960.0)
    step = int(24 * scale * 1.6)
    band = min(height, step * len(lines) + step // 3)
    image[:band] = (image[:band].astype(np.uint16) * 2 // 5).astype(np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(image, line, (int(6 * scale) + 2, step * (i + 1) - step // 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    tuple(int(c) for c in colour), 1, cv2.LINE_AA)
    return image


def tracking_overlay(
    rgb: Any,
    K: Any,
    D: Any | None,
    object_verts: Any,
    object_faces: Any,
    hand_verts: Any | None = None,
    hand_groups: Any | None = None,
    hand_faces: Any | None = None,
    contact_points: Any | None = None,
    contact_values: Any | None = None,
    lines: Sequence[str] = (),
    thickness: int | None = None,
) -> np.ndarray:
    """A new RGB image: ``rgb`` with the object outline (green), the hand outline (blue), contacts and text.

    Args:
        rgb: ``(H, W, 3) uint8`` input image (not modified).
        K, D: intrinsics ``(3, 3)`` and distortion coefficients (or None) of ``rgb``.
        object_verts: ``(Vo, 3)`` object mesh vertices in the camera frame [m]; object_faces: ``(Fo, 3)``.
        hand_verts: ``(Vh, 3)`` hand mesh vertices in the camera frame [m], or None (no hand outline).
        hand_groups: ``(Vh,)`` convex vertex groups (e.g. ``URDFHand.vertex_link``) -> hull fill; else
            hand_faces: ``(Fh, 3)`` -> triangle fill.
        contact_points: ``(C, 3)`` camera-frame contact points [m]; contact_values: ``(C,)`` in [0, 1].
        lines: text drawn top-left (state, quality, ...).
        thickness: outline thickness [px] (default from the image size).
    """
    image = _array(rgb, "rgb", (None, None, 3), dtype=np.uint8).copy()
    height, width = image.shape[:2]
    thickness = thickness if thickness is not None else max(1, round(min(height, width) / 240))
    if hand_verts is not None:
        uv, valid = project_points(hand_verts, K, D)
        if hand_groups is not None:
            hand_mask = convex_groups_mask(uv, valid, hand_groups, height, width)
        elif hand_faces is not None:
            hand_mask = triangles_mask(uv, valid, hand_faces, height, width)
        else:
            raise InvalidValueError("hand_verts needs hand_groups or hand_faces")
        draw_outline(image, hand_mask, HAND_COLOUR, thickness)
    uv, valid = project_points(object_verts, K, D)
    draw_outline(image, triangles_mask(uv, valid, object_faces, height, width), OBJECT_COLOUR, thickness,
                 fill_alpha=0.25)
    if contact_points is not None:
        points = _array(contact_points, "contact_points", (None, 3))
        if len(points):
            values = None if contact_values is None else _array(contact_values, "contact_values", (len(points),))
            puv, _ = project_points(points, K, D)
            draw_points(image, puv, values, radius=max(2, thickness + 1))
    return draw_text(image, lines)


#: :func:`instance_overlay` colours (RGB): the object's outline by tracking status (else :data:`LOST_COLOUR`),
#: the hand's outline, the object axes x / y / z and the contact dots.
STATUS_COLOURS = {"tracking": (60, 220, 60), "initialising": (255, 165, 0)}
LOST_COLOUR = (255, 40, 40)
RENDER_HAND_COLOUR = (40, 160, 255)
AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (40, 80, 230))
DOT_COLOUR = (255, 230, 0)


def instance_overlay(
    rgb: Any,
    instance: Any,
    hand_id: int,
    object_id: int,
    status: str,
    axes_uv: Any | None = None,
    contacts_uv: Any | None = None,
    label: str = "",
) -> np.ndarray:
    """A new RGB image: ``rgb`` with the outlines of a hard render's hand and object, the object axes, contacts
    and a label.

    Args:
        rgb: ``(H, W, 3) uint8`` input image (not modified).
        instance: ``(H, W)`` instance map of a hard render (``hand_id`` / ``object_id``, -1 = background).
        status: tracking status; it picks the object's outline colour (:data:`STATUS_COLOURS`).
        axes_uv: ``(4, 2)`` pixels of the object origin and of its x, y, z axis ends, or None (not drawn).
        contacts_uv: ``(C, 2)`` pixels of the contact points in front of the camera, or None.
        label: one line of text, top left.
    """
    image = np.array(_array(rgb, "rgb", (None, None, 3), dtype=np.uint8), order="C", copy=True)
    inst = _array(instance, "instance", image.shape[:2], dtype=np.int64)
    height, width = image.shape[:2]
    colours = {hand_id: RENDER_HAND_COLOUR, object_id: STATUS_COLOURS.get(status, LOST_COLOUR)}
    for ident in (hand_id, object_id):
        mask = (inst == ident).astype(np.uint8)
        if mask.any():
            draw_outline(image, mask, colours[ident], 2 if ident == object_id else 1)
    if axes_uv is not None:
        uv = _array(axes_uv, "axes_uv", (4, 2))
        o = tuple(round(v) for v in uv[0])
        for k, colour in zip((1, 2, 3), AXIS_COLOURS):
            p = tuple(round(v) for v in uv[k])
            if max(abs(o[0]), abs(o[1]), abs(p[0]), abs(p[1])) < 10 * max(height, width):
                cv2.line(image, o, p, colour, 2, cv2.LINE_AA)
    if contacts_uv is not None:
        for u, v in _array(contacts_uv, "contacts_uv", (None, 2)):
            if 0 <= u < width and 0 <= v < height:
                cv2.circle(image, (round(u), round(v)), 3, DOT_COLOUR, -1, cv2.LINE_AA)
    if label:
        scale = max(0.35, min(1.0, width / 900))
        origin = (6, int(18 * scale / 0.6))
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image
