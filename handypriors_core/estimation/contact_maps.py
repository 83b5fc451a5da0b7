"""Contact maps on a hand mesh (paper Sec. IV-D): target maps (and their normals) read from ``.npy`` / ``.json``,
agreement between a predicted and a target map, and images of the hand coloured by contact value.
Used by :mod:`.contact_refinement` and ``handypriors refine-contact``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..checks import check_finite, check_shape
from ..errors import InvalidValueError, ModelFileError, ShapeError
from ..geometry.transforms import make_transform, transform_points

__all__ = ["contact_agreement", "contact_colors", "load_contact_target", "render_contact_image"]


def _check_target(values: torch.Tensor, num_vertices: int, name: str = "target") -> None:
    if not isinstance(values, torch.Tensor):
        raise ShapeError(f"Expected {name} to be a torch.Tensor; got {type(values).__name__}")
    if values.shape != (num_vertices,):
        raise ShapeError(f"{name} must hold one contact value per hand vertex, shape ({num_vertices},); "
                         f"got {tuple(values.shape)}")
    check_finite(values, name)
    if bool((values < 0).any()) or bool((values > 1).any()):
        raise InvalidValueError(f"{name} values must lie in [0, 1] (CO = min(1 / s_mm, 1))")


def _check_normals(normals: torch.Tensor, num_vertices: int, name: str = "target_normals") -> None:
    check_shape(normals, (num_vertices, 3), name)
    check_finite(normals, name)


def load_contact_target(path: str | os.PathLike, num_vertices: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read a target contact map: ``values (V,)`` float64 and optional ``normals (V, 3)``.

    Formats: ``.npy`` of shape ``(V,)`` (values) or ``(V, 4)`` (value, normal xyz); ``.json`` as
    ``{"contact": [V values], "normals": [[x, y, z] x V] (optional)}`` or a plain list of ``V`` values.
    ModelFileError names a missing / unreadable file, ShapeError a wrong size, InvalidValueError NaN/inf or
    values outside [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"contact map file not found: {path}")
    normals = None
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 2 and arr.shape[1] == 4:
                arr, normals = arr[:, 0], arr[:, 1:]
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                if "contact" not in data:
                    raise ModelFileError(f"{path}: expected a 'contact' entry")
                arr = data["contact"]
                normals = data.get("normals")
            else:
                arr = data
            arr = np.asarray(arr, dtype=np.float64)
            normals = None if normals is None else np.asarray(normals, dtype=np.float64)
        else:
            raise ModelFileError(f"{path}: contact maps are .npy or .json files")
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"cannot read contact map {path}: {exc}") from None
    values = torch.as_tensor(np.asarray(arr, dtype=np.float64))
    _check_target(values, num_vertices, f"contact map {path.name}")
    normals_t = None
    if normals is not None:
        normals_t = torch.as_tensor(normals, dtype=torch.float64)
        _check_normals(normals_t, num_vertices, f"normals of {path.name}")
    return values, normals_t


def contact_agreement(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """Agreement of contact maps ``(V,)``: mean absolute difference ``mae``, and ``iou`` / ``precision`` /
    ``recall`` of the contact sets ``CO >= threshold`` (1 when both sets are empty)."""
    if pred.shape != target.shape:
        raise ShapeError(f"pred and target must have the same shape; got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    p, t = pred >= threshold, target >= threshold
    inter, union = float((p & t).sum()), float((p | t).sum())
    return {
        "mae": float((pred.double() - target.double()).abs().mean()),
        "iou": inter / union if union else 1.0,
        "precision": inter / float(p.sum()) if bool(p.any()) else float(not bool(t.any())),
        "recall": inter / float(t.sum()) if bool(t.any()) else 1.0,
    }


def contact_colors(values: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] ``(..., 3)`` for contact values ``(...)``: blue (0) - white (0.5) - red (1)."""
    v = values.clamp(0, 1)[..., None]
    blue = torch.tensor([0.15, 0.3, 0.9], dtype=v.dtype, device=v.device)
    white = torch.tensor([0.95, 0.95, 0.95], dtype=v.dtype, device=v.device)
    red = torch.tensor([0.9, 0.1, 0.1], dtype=v.dtype, device=v.device)
    low = blue + (white - blue) * (2 * v)
    high = white + (red - white) * (2 * v - 1)
    return torch.where(v < 0.5, low, high)


def render_contact_image(verts: torch.Tensor, faces: torch.Tensor, values: torch.Tensor,
                         object_verts: torch.Tensor | None = None, object_faces: torch.Tensor | None = None,
                         size: int = 256) -> np.ndarray:
    """Two views of the hand coloured by contact value: ``(size, 2 size, 3)`` uint8 RGB.

    Left: the hand alone seen from the object (the contact side); right: hand and object (grey) from the
    side. Rendered with the project's renderer (soft rasterizer at a vanishing blur, vertex colours, head
    light). ``verts (V, 3)``, ``values (V,)``, optional object mesh ``(Vo, 3)``, ``(Fo, 3)``, one frame.
    """
    from ..geometry.camera import PinholeCamera
    from ..render.renderer import Renderer, join_meshes

    check_shape(verts, (None, 3), "verts")
    check_shape(values, (verts.shape[0],), "values")
    dev = verts.device
    verts = verts.detach().float()
    centre = verts.mean(0)
    towards = (object_verts.detach().float().mean(0) - centre) if object_verts is not None else \
        torch.tensor([0.0, 0.0, -1.0], device=dev)
    if float(towards.norm()) < 1e-6:
        towards = torch.tensor([0.0, 0.0, -1.0], device=dev)
    towards = towards / towards.norm()
    radius = float((verts - centre).norm(dim=-1).max())
    if object_verts is not None:
        radius = max(radius, float((object_verts.detach().float() - centre).norm(dim=-1).max()))
    focal = size * 1.1
    K = torch.tensor([[focal, 0.0, (size - 1) / 2], [0.0, focal, (size - 1) / 2], [0.0, 0.0, 1.0]], device=dev)
    cam = PinholeCamera(K, size, size)
    renderer = Renderer()
    colors = contact_colors(values.detach().float().to(dev))

    def view(direction: torch.Tensor, with_object: bool) -> np.ndarray:
        z = -direction  # camera looks along -direction (from centre + direction * distance)
        helper = torch.tensor([0.0, 1.0, 0.0], device=dev) if abs(float(z[1])) < 0.9 else \
            torch.tensor([1.0, 0.0, 0.0], device=dev)
        x = torch.linalg.cross(helper, z)
        x = x / x.norm()
        y = torch.linalg.cross(z, x)
        R = torch.stack((x, y, z), 0)
        dist = radius * 2.4 + 0.05
        t = torch.tensor([0.0, 0.0, dist], device=dev) - R @ centre
        T = make_transform(R, t)[None]
        meshes = [(transform_points(T, verts[None]), faces.to(dev))]
        cols = [colors]
        if with_object and object_verts is not None:
            meshes.append((transform_points(T, object_verts.detach().float()[None]), object_faces.to(dev)))
            cols.append(torch.full((object_verts.shape[0], 3), 0.55, device=dev))
        v, f, inst = join_meshes(meshes)
        out = renderer(v, f, cam, face_instance=inst, vertex_colors=torch.cat(cols, 0)[None], sigma=1e-4,
                       gamma=1e-4)
        img = out.rgb[0] * out.union[0, ..., None] + (1 - out.union[0, ..., None])  # white background
        return (img.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

    side = torch.linalg.cross(towards, torch.tensor([0.0, 0.0, 1.0], device=dev))
    if float(side.norm()) < 1e-3:
        side = torch.linalg.cross(towards, torch.tensor([1.0, 0.0, 0.0], device=dev))
    side = side / side.norm()
    return np.concatenate([view(towards, False), view(side, True)], 1)
