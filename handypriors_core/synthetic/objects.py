"""Textured object meshes of the generator: box, cylinder, mesh file or the built-in bottle, and their OBJ export.

An :class:`ObjectMesh` keeps shared vertex positions (a closed surface for the signed distance) and texture
coordinates per face corner (``face_uv``), so UV seams need no duplicated vertices. Written as
``model.obj`` (``v`` + ``vt`` + ``f v/vt``), ``model.mtl`` and ``texture.png`` (OBJ convention: ``v = 0`` is the
bottom row of the image).

- **box**: each face its own colour, number 1-6 and bar of 1-6 units (+x 1, -x 2, +y 3, -y 4, +z 5, -z 6), read
  the right way round from outside, plus a corner dot; geometry symmetric, texture not.
- **cylinder** (axis z): six coloured sectors with numbers 1-6 around the side, caps 7 (+z) and 8 (-z).
- **mesh**: a file's own UVs and texture, or else a baked procedural texture (3D noise, bands along z and a red
  marker stripe on the +x side); the built-in bottle is a non-convex solid of revolution about z.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ..models import primitives
from .scenario import ObjectSettings
from .textures import FACE_COLOURS, bake_triangle_atlas, label_tile, solid_noise

__all__ = ["ObjectMesh", "bottle_profile", "corner_normals", "make_object_mesh"]

_INSET = 0.02  # fraction of a tile kept free around its content


@dataclasses.dataclass(frozen=True, eq=False)
class ObjectMesh:
    """A textured triangle mesh in the object frame.

    Attributes:
        name: object name. verts: ``(V, 3)`` float64 [m]. faces: ``(F, 3)`` int64, counter-clockwise from outside.
        face_uv: ``(F, 3, 2)`` float64 texture coordinates per face corner (``v = 0`` bottom).
        texture: ``(H, W, 3)`` uint8 RGB (row 0 top). smooth: shade with crease-angle vertex normals.
        symmetry: free text for ``gt.json`` (``object.symmetry``).
    """

    name: str
    verts: np.ndarray
    faces: np.ndarray
    face_uv: np.ndarray
    texture: np.ndarray
    smooth: bool = False
    symmetry: str = "none"

    @property
    def center(self) -> np.ndarray:
        """``(3,)`` centre of the axis-aligned bounding box [m]."""
        return (self.verts.min(0) + self.verts.max(0)) / 2.0

    def write_obj(self, folder: str | Path, stem: str = "model") -> Path:
        """Write ``<stem>.obj``, ``<stem>.mtl`` and ``texture.png`` into ``folder``; returns the OBJ path."""
        import cv2

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        uv_flat = np.round(self.face_uv.reshape(-1, 2), 6)
        uv_unique, uv_index = np.unique(uv_flat, axis=0, return_inverse=True)
        uv_index = uv_index.reshape(-1, 3) + 1
        vi = self.faces + 1
        lines = [f"# {self.name}: HandyPriors synthetic object; object frame, metres",
                 f"mtllib {stem}.mtl", "o object"]
        lines += [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in self.verts]
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv_unique]
        lines.append("usemtl object")
        lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc) in zip(vi.tolist(), uv_index.tolist())]
        obj_path = folder / f"{stem}.obj"
        obj_path.write_text("\n".join(lines) + "\n")
        (folder / f"{stem}.mtl").write_text(
            "newmtl object\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd texture.png\n")
        if not cv2.imwrite(str(folder / "texture.png"), np.ascontiguousarray(self.texture[..., ::-1])):
            raise ModelFileError(f"cannot write {folder / 'texture.png'}")
        return obj_path


# ----------------------------------------------------------------------------------------------- normals
def corner_normals(verts: np.ndarray, faces: np.ndarray, crease: float | None) -> np.ndarray:
    """Shading normals per face corner ``(F, 3, 3)``: the area-weighted mean of the normals of the faces around
    the corner's vertex that lie within ``crease`` [rad] of the face's own normal (flat when ``crease`` is None).
    Vectorised over all (corner, neighbouring face) pairs."""
    fn, area = primitives.face_normals(verts, faces)
    F = len(faces)
    if crease is None:
        return np.repeat(fn[:, None, :], 3, axis=1)
    corner_vertex = faces.reshape(-1)
    corner_face = np.repeat(np.arange(F), 3)
    order = np.argsort(corner_vertex, kind="stable")
    sorted_vertex = corner_vertex[order]
    starts = np.searchsorted(sorted_vertex, corner_vertex, side="left")
    counts = np.searchsorted(sorted_vertex, corner_vertex, side="right") - starts
    pair_corner = np.repeat(np.arange(3 * F), counts)
    offsets = np.arange(len(pair_corner)) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_face = corner_face[order[np.repeat(starts, counts) + offsets]]
    own = fn[corner_face[pair_corner]]
    other = fn[pair_face]
    keep = (own * other).sum(1) >= np.cos(crease)
    acc = np.zeros((3 * F, 3))
    np.add.at(acc, pair_corner[keep], other[keep] * area[pair_face[keep], None])
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    out = np.where(norm > 1e-30, acc / np.maximum(norm, 1e-30), fn[corner_face])
    return out.reshape(F, 3, 3)


# ----------------------------------------------------------------------------------------------- builders
def _tile_uv(local: np.ndarray, col: np.ndarray, row: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Local tile coordinates ``(..., 2)`` in [0, 1] (v up) -> atlas UV for tiles at (col, row) (row 0 = top)."""
    inner = _INSET + local * (1 - 2 * _INSET)
    u = (col + inner[..., 0]) / cols
    v = 1.0 - (row + 1 - inner[..., 1]) / rows
    return np.stack([u, v], -1)


def _box(settings: ObjectSettings) -> ObjectMesh:
    ext = np.asarray(settings.extents, np.float64)
    verts, faces = primitives.box_mesh(ext, max_edge=settings.max_edge)
    fn, _ = primitives.face_normals(verts, faces)
    axis = np.abs(fn).argmax(1)
    positive = fn[np.arange(len(fn)), axis] > 0
    side = 2 * axis + (~positive)  # 0 +x, 1 -x, 2 +y, 3 -y, 4 +z, 5 -z
    # in-plane axes (e_u, e_v) with e_u x e_v = outward normal
    # (side faces read upright with object z up)
    e_u = np.array([[0, 1, 0], [0, -1, 0], [-1, 0, 0], [1, 0, 0], [1, 0, 0], [-1, 0, 0]], np.float64)
    e_v = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 0], [0, 1, 0]], np.float64)
    half = ext / 2.0
    corners = verts[faces]  # (F, 3, 3)
    hu = np.abs(e_u[side]) @ half
    hv = np.abs(e_v[side]) @ half
    lu = ((corners * e_u[side][:, None]).sum(-1) + hu[:, None]) / (2 * hu[:, None])
    lv = ((corners * e_v[side][:, None]).sum(-1) + hv[:, None]) / (2 * hv[:, None])
    face_uv = _tile_uv(np.stack([lu, lv], -1), (side % 3)[:, None], (side // 3)[:, None], 3, 2)
    tile = settings.texture_size // 3
    texture = np.concatenate([
        np.concatenate([label_tile(tile, FACE_COLOURS[r * 3 + c], r * 3 + c + 1) for c in range(3)], axis=1)
        for r in range(2)], axis=0)
    return ObjectMesh(settings.name or "box", verts, faces, face_uv, texture, smooth=False,
                      symmetry="geometry: box (D2h); the texture breaks it")


def _cylinder(settings: ObjectSettings) -> ObjectMesh:
    r, h = settings.radius, settings.height
    sections = max(12, int(np.ceil(2 * np.pi * r / settings.max_edge)))
    segments = max(1, int(np.ceil(h / settings.max_edge)))
    verts, faces = primitives.cylinder_mesh(r, h, sections, segments)
    fn, _ = primitives.face_normals(verts, faces)
    corners = verts[faces]
    is_side = np.abs(fn[:, 2]) < 0.5
    # side: u = angle / 2 pi, unwrapped per face across the seam (into [0, 1 + 1/sections])
    ang = np.arctan2(corners[..., 1], corners[..., 0]) / (2 * np.pi) % 1.0
    wrap = (ang.max(1, keepdims=True) - ang.min(1, keepdims=True)) > 0.5
    ang = np.where(wrap & (ang < 0.5), ang + 1.0, ang)
    size = settings.texture_size
    extra = 0.25  # the side band spans u in [0, 1.25] (periodic), so seam faces stay inside it
    band_w, band_h = size, size // 2
    period = round(band_w / (1 + extra))
    sector_w = int(np.ceil(period / 6))
    sectors = np.concatenate([label_tile((band_h, sector_w), FACE_COLOURS[k], k + 1) for k in range(6)], axis=1)
    sectors = sectors[:, :period]
    band = np.concatenate([sectors, sectors[:, : band_w - period]], axis=1)
    u_side = ang * period / band_w
    v_side = 0.5 + 0.5 * (_INSET + (corners[..., 2] + h / 2) / h * (1 - 2 * _INSET))
    # caps: polar map into the two lower tiles (7: +z on the left, 8: -z on the right, mirrored to read from below)
    top = fn[:, 2] > 0
    cx = np.where(top[:, None], corners[..., 0], -corners[..., 0])
    local = np.stack([0.5 + 0.5 * cx / r, 0.5 + 0.5 * corners[..., 1] / r], -1)
    cap_uv = _tile_uv(local, np.where(top, 0, 1)[:, None], np.ones((len(faces), 1), np.int64), 2, 2)
    face_uv = np.where(is_side[:, None, None], np.stack([u_side, v_side], -1), cap_uv)
    caps = np.concatenate([label_tile(size // 2, FACE_COLOURS[6], 7), label_tile(size // 2, FACE_COLOURS[7], 8)], 1)
    texture = np.concatenate([band, caps[:, :band_w]], axis=0)
    return ObjectMesh(settings.name or "cylinder", verts, faces, face_uv, texture, smooth=True,
                      symmetry="geometry: cylinder (rotation about z, flip); the texture breaks it")


def bottle_profile(height: float = 0.1, radius: float = 0.03) -> np.ndarray:
    """(r, z) profile of the built-in bottle, bottom at ``-height/2`` (flat), neck narrower than the body."""
    z = np.array([0.0, 0.0, 0.04, 0.5, 0.62, 0.72, 0.8, 0.96, 1.0, 1.0]) * height - height / 2
    r = np.array([0.0, 0.94, 1.0, 1.0, 0.85, 0.55, 0.48, 0.48, 0.45, 0.0]) * radius
    return np.stack([r, z], 1)


def _baked(name: str, verts: np.ndarray, faces: np.ndarray, size: int, seed: int, symmetry: str) -> ObjectMesh:
    rng = np.random.default_rng(seed)
    noise_a, noise_b = solid_noise(rng, freq=(12.0, 40.0)), solid_noise(rng, freq=(40.0, 90.0))
    base = np.array([[40, 90, 170], [230, 190, 60]], np.float64)
    band_colours = np.array([[200, 50, 40], [40, 150, 70], [240, 240, 240]], np.float64)
    lo, hi = verts.min(0), verts.max(0)

    def colour(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        t = 1.0 / (1.0 + np.exp(-4.0 * noise_a(points)))
        c = base[0] * (1 - t[:, None]) + base[1] * t[:, None]
        c *= (0.85 + 0.15 * noise_b(points))[:, None]
        zrel = (points[:, 2] - lo[2]) / max(hi[2] - lo[2], 1e-9)
        band = np.floor(zrel * 7).astype(np.int64)
        stripe = (np.abs(zrel * 7 - band - 0.5) < 0.12) & (band % 2 == 1)
        c = np.where(stripe[:, None], band_colours[band % 3], c)
        angle = np.arctan2(points[:, 1], points[:, 0])
        marker = np.abs(angle) < 0.25
        c = np.where(marker[:, None], np.array([220.0, 30.0, 30.0]), c)
        return c

    face_uv, texture = bake_triangle_atlas(verts, faces, colour, size)
    return ObjectMesh(name, verts, faces, face_uv, texture, smooth=True, symmetry=symmetry)


def _mesh(settings: ObjectSettings, seed: int) -> ObjectMesh:
    import trimesh

    if not settings.mesh_path:
        mesh = trimesh.creation.revolve(bottle_profile(settings.height, settings.radius), sections=36)
        mesh = mesh.subdivide_to_size(settings.max_edge * 1.5)
        verts = np.asarray(mesh.vertices, np.float64)
        faces = np.asarray(mesh.faces, np.int64)
        return _baked(settings.name or "bottle", verts, faces, settings.texture_size, seed,
                      "geometry: rotation about z; the texture breaks it")
    path = Path(settings.mesh_path)
    if not path.is_file():
        raise ModelFileError(f"object mesh file not found: {path}")
    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as exc:  # noqa: BLE001 - trimesh raises many exception types
        raise ModelFileError(f"cannot read object mesh {path}: {exc}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ModelFileError(f"object mesh {path} holds no triangles")
    verts = np.asarray(mesh.vertices, np.float64) * settings.mesh_scale
    faces = np.asarray(mesh.faces, np.int64)
    visual = mesh.visual
    image = getattr(getattr(visual, "material", None), "image", None)
    uv = getattr(visual, "uv", None) if visual.kind == "texture" else None
    name = settings.name or path.stem
    if uv is not None and image is not None and len(uv) == len(verts):
        texture = np.asarray(image.convert("RGB"), np.uint8)
        return ObjectMesh(name, verts, faces, np.asarray(uv, np.float64)[faces], texture, smooth=True,
                          symmetry="unknown")
    return _baked(name, verts, faces, settings.texture_size, seed, "unknown")


def make_object_mesh(settings: ObjectSettings, seed: int = 0) -> ObjectMesh:
    """The object of ``settings`` (deterministic; ``seed`` only drives baked procedural textures)."""
    if settings.kind == "box":
        return _box(settings)
    if settings.kind == "cylinder":
        return _cylinder(settings)
    return _mesh(settings, seed)
