"""Procedural textures (OpenCV drawing + numpy noise): labelled face tiles, noise images, baked solid textures.

All images are ``(H, W, 3)`` uint8 RGB, row 0 at the top. Texture coordinates follow the OBJ convention:
``u`` to the right, ``v = 0`` at the bottom row, so pixel column ``x = u * W`` and row ``y = (1 - v) * H``
(continuous coordinates, pixel centres at ``+0.5``). Everything is deterministic given the numpy Generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "FACE_COLOURS",
    "bake_triangle_atlas",
    "label_tile",
    "noise_field",
    "noise_image",
    "poster_image",
    "solid_noise",
]

#: Six clearly distinct face colours (RGB 0-255): red, green, blue, yellow, magenta, cyan-ish.
FACE_COLOURS = (
    (214, 48, 39),
    (44, 160, 44),
    (31, 90, 200),
    (240, 200, 30),
    (190, 60, 190),
    (30, 190, 190),
    (245, 130, 30),
    (120, 120, 120),
)


def _contrast(colour: Sequence[int]) -> tuple[int, int, int]:
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (15, 15, 15) if luminance > 110 else (245, 245, 245)


def label_tile(size: int | tuple[int, int], colour: Sequence[int], number: int, bars: int | None = None,
               border: bool = True) -> np.ndarray:
    """A face tile: background ``colour``, the digit(s) of ``number`` and a bar of ``bars`` (default ``number``)
    units below it, in a contrasting colour. ``size``: edge [px] or ``(height, width)``."""
    import cv2

    h, w = (size, size) if isinstance(size, int) else size
    tile = np.empty((h, w, 3), np.uint8)
    tile[:] = np.asarray(colour, np.uint8)
    ink = _contrast(colour)
    text = str(int(number))
    side = min(h, w)
    scale = side / 60.0 / max(1, len(text)) ** 0.5
    thick = max(1, round(side / 40))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    org = (int((w - tw) / 2), int(h * 0.55 + th / 2))
    cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thick, cv2.LINE_AA)
    bars = int(number if bars is None else bars)
    if bars > 0:
        unit = w * 0.8 / 6.0
        y0, y1 = int(h * 0.78), int(h * 0.86)
        x0 = int(w * 0.1)
        cv2.rectangle(tile, (x0, y0), (int(x0 + unit * min(bars, 6)) - 1, y1), ink, -1)
    # a corner mark (top left) makes every tile's in-plane rotation observable
    cv2.circle(tile, (int(w * 0.14), int(h * 0.14)), max(1, int(side * 0.06)), ink, -1, cv2.LINE_AA)
    if border:
        cv2.rectangle(tile, (0, 0), (w - 1, h - 1), ink, max(1, round(side / 80)))
    return tile


def noise_field(rng: np.random.Generator, height: int, width: int, cells: float = 8.0, octaves: int = 3) -> np.ndarray:
    """Smooth value noise in [0, 1], ``(height, width)`` float32: ``octaves`` upsampled random grids whose
    coarsest has about ``cells`` cells across."""
    import cv2

    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        n = max(2, round(cells * 2**k))
        m = max(2, round(n * height / max(width, 1)))
        grid = rng.random((m, n)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def noise_image(rng: np.random.Generator, height: int, width: int, colours: Sequence[Sequence[int]] | None = None,
                cells: float = 8.0, stretch: float = 1.0) -> np.ndarray:
    """Coloured noise texture: a random gradient through ``colours`` (default: random muted palette) driven by
    value noise; ``stretch > 1`` elongates the pattern horizontally (wood-like grain)."""
    import cv2

    if colours is None:
        colours = (rng.integers(40, 220, size=(3, 3))).tolist()
    palette = np.asarray(colours, np.float32)
    field = noise_field(rng, height, max(2, round(width / stretch)), cells=cells)
    if stretch != 1.0:
        field = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
    pos = field * (len(palette) - 1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, len(palette) - 2)
    frac = (pos - lo)[..., None]
    img = palette[lo] * (1 - frac) + palette[lo + 1] * frac
    return np.clip(img, 0, 255).astype(np.uint8)


def poster_image(rng: np.random.Generator, height: int, width: int, shapes: int = 40) -> np.ndarray:
    """A cluttered backdrop: noise background with random rectangles, circles, lines and text (posters, cables,
    shelves), all drawn with OpenCV."""
    import cv2

    img = noise_image(rng, height, width, cells=6.0)
    side = min(height, width)
    for _ in range(shapes):
        kind = int(rng.integers(0, 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(side // 30 + 1, side // 5 + 2))
        if kind == 0:
            cv2.rectangle(img, (x0, y0), (x0 + size, y0 + int(size * rng.uniform(0.3, 1.5))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x0, y0), size // 2 + 1, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            x1, y1 = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.line(img, (x0, y0), (x1, y1), colour, max(1, side // 150), cv2.LINE_AA)
        else:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(2, 7))))
            cv2.putText(img, text, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, size / 40.0, colour,
                        max(1, size // 15), cv2.LINE_AA)
    return img


def solid_noise(rng: np.random.Generator, waves: int = 8, freq: tuple[float, float] = (15.0, 60.0)
                ) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth 3D noise function ``f(points (N, 3) [m]) -> (N,)`` in [-1, 1]: a sum of ``waves`` random plane
    waves with spatial frequencies in ``freq`` [1/m] (continuous everywhere, so baked textures have no seams)."""
    directions = rng.normal(size=(waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = rng.uniform(freq[0], freq[1], size=waves) * 2 * np.pi
    phase = rng.uniform(0, 2 * np.pi, size=waves)

    def f(points: np.ndarray) -> np.ndarray:
        return np.sin(points @ (directions * k[:, None]).T + phase).mean(axis=1) * np.sqrt(2.0)

    return f


def bake_triangle_atlas(
    verts: np.ndarray,
    faces: np.ndarray,
    colour_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    size: int,
    margin: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Bake a solid texture into a per-triangle atlas (works for any mesh, no unwrapping needed).

    Each grid cell of the ``size x size`` atlas holds two triangles (lower-left and upper-right halves), inset by
    ``margin`` texels so bilinear lookups never reach a neighbour. Every texel is coloured by
    ``colour_fn(points (N, 3), normals (N, 3)) -> (N, 3)`` in [0, 255] at the surface point it maps to
    (texels of the margins get the nearest point of their triangle).

    Returns ``face_uv (F, 3, 2)`` float64 (OBJ convention, ``v = 0`` bottom) and the texture ``(size, size, 3)``
    uint8.
    """
    verts = np.asarray(verts, np.float64)
    faces = np.asarray(faces, np.int64)
    F = len(faces)
    n = max(1, int(np.ceil(np.sqrt((F + 1) // 2))))
    cell = size / n
    m = min(margin, cell / 8)
    s2 = np.sqrt(2.0)
    # triangle corners inside a cell [px], for the lower (even face index) and upper (odd) half
    lower = np.array([[m, m], [cell - m * (1 + s2), m], [m, cell - m * (1 + s2)]])
    upper = np.array([[cell - m, cell - m], [m * (1 + s2), cell - m], [cell - m, m * (1 + s2)]])
    idx = np.arange(F)
    slot = idx // 2
    origin = np.stack([(slot % n) * cell, (slot // n) * cell], axis=1)  # (F, 2) px, x right, y down
    local = np.where((idx % 2 == 0)[:, None, None], lower[None], upper[None])
    corners_px = origin[:, None, :] + local  # (F, 3, 2)
    face_uv = np.stack([corners_px[..., 0] / size, 1.0 - corners_px[..., 1] / size], axis=-1)

    # every texel centre -> (face, barycentrics)
    ys, xs = np.mgrid[0:size, 0:size]
    px = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    cx = np.minimum((px[:, 0] // cell).astype(np.int64), n - 1)
    cy = np.minimum((px[:, 1] // cell).astype(np.int64), n - 1)
    lx, ly = px[:, 0] - cx * cell, px[:, 1] - cy * cell
    upper_half = lx + ly > cell
    face = (cy * n + cx) * 2 + upper_half
    valid = face < F
    face = np.minimum(face, F - 1)
    tri = corners_px[face]  # (N, 3, 2)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, px - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-12, d00 * d11 - d01 * d01, 1.0)
    w1 = (d11 * d20 - d01 * d21) / den
    w2 = (d00 * d21 - d01 * d20) / den
    w = np.clip(np.stack([1 - w1 - w2, w1, w2], axis=1), 0.0, None)
    w /= w.sum(1, keepdims=True)
    tv = verts[faces[face]]  # (N, 3, 3)
    points = (w[..., None] * tv).sum(1)
    normals = np.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)
    colours = np.asarray(colour_fn(points, normals), np.float64)
    colours[~valid] = 128.0
    texture = np.clip(np.round(colours), 0, 255).astype(np.uint8).reshape(size, size, 3)
    return face_uv, texture
