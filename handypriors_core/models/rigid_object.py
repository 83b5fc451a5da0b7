"""A known rigid object: triangle mesh, appearance, surface samples and size, as torch tensors.

:class:`RigidObject` is a plain class (not an ``nn.Module``): its tensors are constants of the tracked object
and the pose being estimated lives elsewhere (``object2camera``). Everything is in the object frame, metres.
``to(device, dtype)`` returns a moved copy.

Meshes load through trimesh (``.obj``, ``.ply``, ``.stl``, ...; scenes with several geometries are merged).
Meshes in millimetres need ``scale=0.001``; a diameter above :data:`MAX_PLAUSIBLE_DIAMETER` warns that the
file is probably in millimetres.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidValueError, ModelFileError
from . import primitives

__all__ = ["MAX_PLAUSIBLE_DIAMETER", "RigidObject"]

#: A hand-held object wider than this [m] was most likely exported in millimetres.
MAX_PLAUSIBLE_DIAMETER = 2.0


def _hull_diameter(verts: np.ndarray) -> float:
    """Largest distance between two vertices, computed on the convex hull's vertices [m]."""
    from scipy.spatial import ConvexHull, QhullError

    pts = verts
    try:
        pts = verts[ConvexHull(verts).vertices]
    except (QhullError, ValueError):  # flat or degenerate: fall back to all (unique) vertices
        pts = np.unique(verts, axis=0)
    if len(pts) < 2:
        return 0.0
    best = 0.0
    chunk = max(1, 4_000_000 // len(pts))  # rows per block: bounds the memory for very large hulls
    for start in range(0, len(pts), chunk):
        block = pts[start:start + chunk]
        best = max(best, float(np.sqrt(((block[:, None, :] - pts[None, :, :]) ** 2).sum(-1).max())))
    return best


class RigidObject:
    """Object model in its own frame (metres).

    Attributes:
        verts: ``(V, 3)`` float [m]. faces: ``(F, 3)`` long. vertex_normals: ``(V, 3)`` unit, outward.
        vertex_colors: ``(V, 3)`` float in [0, 1], or None. uv: ``(V, 2)`` float texture coordinates, or None.
        texture: ``(H, W, 3)`` float in [0, 1] (row 0 = top of the image; ``v = 1`` is the top), or None.
        samples: ``(S, 3)`` evenly spread surface points [m] (deterministic), sample_normals: ``(S, 3)``.
        diameter: float [m], largest distance between two surface points. center: ``(3,)`` centre of the
        axis-aligned bounding box [m]. is_watertight: bool. symmetric: bool (a flag for the pose metrics / priors:
        the object looks the same under some rotations). name, source: strings.
    """

    def __init__(
        self,
        verts,
        faces,
        *,
        symmetric: bool = False,
        n_samples: int = 2000,
        vertex_colors=None,
        uv=None,
        texture=None,
        is_watertight: bool | None = None,
        name: str = "object",
        source: str = "",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        v = np.asarray(verts.detach().cpu() if isinstance(verts, torch.Tensor) else verts, dtype=np.float64)
        f = np.asarray(faces.detach().cpu() if isinstance(faces, torch.Tensor) else faces, dtype=np.int64)
        where = f" ({source})" if source else ""
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
            raise ModelFileError(f"object mesh{where} has no vertices (verts shape {v.shape})")
        if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise ModelFileError(f"object mesh{where} has no triangles (faces shape {f.shape})")
        if not np.isfinite(v).all():
            raise InvalidValueError(f"object mesh{where} has NaN/inf vertex coordinates")
        if f.min() < 0 or f.max() >= len(v):
            raise ModelFileError(f"object mesh{where} has face indices outside [0, {len(v)})")
        self.name, self.source, self.symmetric = name, source, bool(symmetric)
        self.diameter = _hull_diameter(v)
        if self.diameter <= 0:
            raise ModelFileError(f"object mesh{where} is degenerate (all vertices coincide)")
        if self.diameter > MAX_PLAUSIBLE_DIAMETER:
            warnings.warn(
                f"object mesh{where} is {self.diameter:.3g} m across (> {MAX_PLAUSIBLE_DIAMETER} m): it is probably "
                f"in millimetres; pass scale=0.001",
                stacklevel=3,
            )
        if is_watertight is None:
            import trimesh

            is_watertight = bool(trimesh.Trimesh(v, f, process=False).is_watertight)
        self.is_watertight = bool(is_watertight)
        samples, sample_normals, _ = primitives.sample_surface_even(v, f, int(n_samples), seed=0)
        self.center = (v.min(0) + v.max(0)) / 2.0
        tensors = {
            "verts": v,
            "vertex_normals": primitives.vertex_normals(v, f),
            "samples": samples,
            "sample_normals": sample_normals,
            "center": self.center,
        }
        for key, value in tensors.items():
            setattr(self, key, torch.as_tensor(value, dtype=dtype, device=device))
        self.faces = torch.as_tensor(f, dtype=torch.long, device=device)
        self.vertex_colors = self.uv = self.texture = None
        for key, value, cols in (("vertex_colors", vertex_colors, 3), ("uv", uv, 2)):
            if value is not None:
                arr = np.asarray(value, dtype=np.float64)
                if arr.shape != (len(v), cols):
                    raise ModelFileError(
                        f"object mesh{where}: {key} has shape {arr.shape}, expected ({len(v)}, {cols})"
                    )
                setattr(self, key, torch.as_tensor(arr, dtype=dtype, device=device))
        if texture is not None:
            tex = np.asarray(texture, dtype=np.float64)
            if tex.ndim != 3 or tex.shape[2] != 3:
                raise ModelFileError(f"object mesh{where}: texture has shape {tex.shape}, expected (H, W, 3)")
            self.texture = torch.as_tensor(tex, dtype=dtype, device=device)

    # ------------------------------------------------------------------------------------------- loaders

    @classmethod
    def from_mesh(
        cls,
        path: str | os.PathLike,
        scale: float = 1.0,
        symmetric: bool = False,
        n_samples: int = 2000,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RigidObject:
        """Load ``.obj`` / ``.ply`` / ``.stl`` (anything trimesh reads) and multiply coordinates by ``scale``.

        Keeps vertex colours (``.ply``, OBJ ``v x y z r g b``) and, for textured OBJ, ``uv`` and the texture
        image. ModelFileError names the file when it is missing, unreadable or holds no triangles.
        """
        import trimesh

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"object mesh file not found: {path}")
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise InvalidValueError(f"scale must be a positive number; got {scale}")
        try:
            mesh = trimesh.load(str(path), force="mesh")
        except Exception as exc:  # noqa: BLE001 - trimesh raises many exception types
            raise ModelFileError(f"cannot read object mesh {path}: {exc}") from None
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
            raise ModelFileError(f"object mesh {path} holds no triangles")
        colors = uv = texture = None
        visual = mesh.visual
        if visual.kind == "vertex":
            colors = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        elif visual.kind == "texture":
            if getattr(visual, "uv", None) is not None and len(visual.uv) == len(mesh.vertices):
                uv = np.asarray(visual.uv, dtype=np.float64)
            image = getattr(getattr(visual, "material", None), "image", None)
            if image is not None:
                texture = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
        return cls(
            np.asarray(mesh.vertices, dtype=np.float64) * scale,
            np.asarray(mesh.faces, dtype=np.int64),
            symmetric=symmetric,
            n_samples=n_samples,
            vertex_colors=colors,
            uv=uv,
            texture=texture,
            is_watertight=bool(mesh.is_watertight),
            name=path.stem,
            source=str(path),
            device=device,
            dtype=dtype,
        )

    @classmethod
    def box(cls, extents: Sequence[float], max_edge: float | None = None, **kwargs) -> RigidObject:
        """Box with full side lengths ``extents (3,)`` [m] centred at the origin; faces subdivided to ``max_edge``
        (default a tenth of the largest side). Keyword args as the constructor (``symmetric``, ``n_samples``...)."""
        ext = [float(e) for e in extents]
        v, f = primitives.box_mesh(ext, max_edge=max_edge or max(ext) / 10.0)
        return cls(v, f, is_watertight=True, name="box", **kwargs)

    @classmethod
    def cylinder(cls, radius: float, height: float, sections: int = 32, **kwargs) -> RigidObject:
        """Capped cylinder along z centred at the origin (``radius``, ``height`` [m])."""
        segs = max(1, int(np.ceil(height / (2 * np.pi * radius / sections))))
        v, f = primitives.cylinder_mesh(radius, height, sections, segs)
        return cls(v, f, is_watertight=True, name="cylinder", **kwargs)

    @classmethod
    def sphere(cls, radius: float, subdivisions: int = 3, **kwargs) -> RigidObject:
        """Icosphere centred at the origin (``radius`` [m])."""
        v, f = primitives.sphere_mesh(radius, subdivisions)
        return cls(v, f, is_watertight=True, name="sphere", **kwargs)

    # ------------------------------------------------------------------------------------------- helpers

    @property
    def device(self) -> torch.device:
        return self.verts.device

    @property
    def dtype(self) -> torch.dtype:
        return self.verts.dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> RigidObject:
        """Copy with every tensor on ``device`` and floating tensors in ``dtype`` (None keeps the current one)."""
        out = object.__new__(RigidObject)
        out.__dict__.update(self.__dict__)
        for key, value in self.__dict__.items():
            if isinstance(value, torch.Tensor):
                setattr(out, key, value.to(device=device, dtype=dtype if value.is_floating_point() else None))
        return out

    def __repr__(self) -> str:
        return (f"RigidObject(name={self.name!r}, verts={len(self.verts)}, faces={len(self.faces)}, "
                f"diameter={self.diameter:.4f} m, watertight={self.is_watertight}, symmetric={self.symmetric})")
