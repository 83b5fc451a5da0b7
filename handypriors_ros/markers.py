"""Pure builders of ``visualization_msgs`` markers for RViz (numpy or torch in, messages out).

- :func:`contact_markers`: contact points as one ``SPHERE_LIST`` coloured by contact value (blue = low,
  red = high on a fixed ``value_range``, so colours mean the same across frames).
- :func:`normal_markers`: one ``ARROW`` per contact normal (start and end point).
- :func:`mesh_marker`: the object mesh as a ``TRIANGLE_LIST`` built from its verts/faces (RViz shows it
  without any file or package setup), placed with ``pose`` (``object2frame``).
- :func:`mesh_resource_marker`: the same through ``MESH_RESOURCE`` (``file://`` or ``package://`` URI).
- :func:`delete_all_marker` and :func:`marker_array`: a ``MarkerArray`` that starts with a ``DELETEALL``
  (by default), so markers of the previous frame that are not re-sent disappear.

Every marker carries ``frame_id`` and ``stamp`` (int ns or ``builtin_interfaces/Time``), a namespace and
an id. Points are in metres in ``frame_id`` unless a ``pose`` says otherwise.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from handypriors_core.errors import InvalidValueError, ShapeError

from .conversions import make_header, matrix_to_pose

__all__ = [
    "contact_markers",
    "delete_all_marker",
    "marker_array",
    "mesh_marker",
    "mesh_resource_marker",
    "normal_markers",
    "value_colors",
]

ColorLike = Sequence[float]


def _array(values: Any, name: str, shape: tuple) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu").numpy()
    out = np.asarray(values, dtype=np.float64)
    if out.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, out.shape)):
        pretty = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(f"Expected {name} to have shape {pretty}; got {out.shape}")
    if not np.isfinite(out).all():
        raise InvalidValueError(f"{name} contains non-finite values")
    return out


def _color(rgba: ColorLike) -> Any:
    from std_msgs.msg import ColorRGBA

    values = [float(v) for v in rgba]
    if len(values) == 3:
        values.append(1.0)
    if len(values) != 4 or not all(0.0 <= v <= 1.0 for v in values):
        raise InvalidValueError(f"colour must be 3 or 4 values in [0, 1] (r, g, b[, a]); got {list(rgba)}")
    return ColorRGBA(r=values[0], g=values[1], b=values[2], a=values[3])


def _points(xyz: np.ndarray) -> list:
    from geometry_msgs.msg import Point

    return [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]


def _base(marker_type: int, frame_id: str, stamp: int | Any, ns: str, marker_id: int, lifetime_s: float) -> Any:
    from builtin_interfaces.msg import Duration
    from visualization_msgs.msg import Marker

    if lifetime_s < 0:
        raise InvalidValueError(f"lifetime_s must be >= 0 (0 = forever); got {lifetime_s}")
    marker = Marker()
    marker.header = make_header(stamp, frame_id)
    marker.ns = ns
    marker.id = int(marker_id)
    marker.type = marker_type
    marker.action = Marker.ADD
    marker.pose.orientation.w = 1.0
    nanoseconds = round(lifetime_s * 1e9)
    marker.lifetime = Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)
    marker.frame_locked = False
    return marker


def value_colors(values: np.ndarray, value_range: tuple[float, float], alpha: float = 1.0) -> np.ndarray:
    """Values ``(N,)`` -> RGBA ``(N, 4)`` in [0, 1]: blue at ``value_range[0]`` through green to red at the top.

    Values outside the range are clipped.
    """
    low, high = float(value_range[0]), float(value_range[1])
    if not high > low:
        raise InvalidValueError(f"value_range must satisfy high > low; got {value_range}")
    t = np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    red = np.clip(2.0 * t - 1.0, 0.0, 1.0)
    blue = np.clip(1.0 - 2.0 * t, 0.0, 1.0)
    green = 1.0 - red - blue
    return np.stack((red, green, blue, np.full_like(t, alpha)), -1)


def contact_markers(
    points: Any,
    values: Any,
    frame_id: str,
    stamp: int | Any = 0,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    diameter: float = 0.006,
    ns: str = "contacts",
    marker_id: int = 0,
    lifetime_s: float = 0.0,
) -> Any:
    """Contact points ``(N, 3)`` [m] with contact values ``(N,)`` -> one ``SPHERE_LIST`` marker.

    ``diameter`` [m] of each sphere; colours from :func:`value_colors` over ``value_range``.
    """
    from visualization_msgs.msg import Marker

    xyz = _array(points, "points", (None, 3))
    value = _array(values, "values", (xyz.shape[0],))
    if diameter <= 0:
        raise InvalidValueError(f"diameter must be > 0 [m]; got {diameter}")
    marker = _base(Marker.SPHERE_LIST, frame_id, stamp, ns, marker_id, lifetime_s)
    marker.scale.x = marker.scale.y = marker.scale.z = float(diameter)
    marker.color = _color((1.0, 1.0, 1.0, 1.0))
    marker.points = _points(xyz)
    marker.colors = [_color(c) for c in value_colors(value, value_range).tolist()]
    return marker


def normal_markers(
    points: Any,
    normals: Any,
    frame_id: str,
    stamp: int | Any = 0,
    *,
    length: float = 0.02,
    shaft_diameter: float = 0.002,
    head_diameter: float = 0.004,
    color: ColorLike = (1.0, 0.85, 0.0, 1.0),
    ns: str = "contact_normals",
    first_id: int = 0,
    lifetime_s: float = 0.0,
) -> list:
    """Normals ``(N, 3)`` at ``points (N, 3)`` -> ``N`` ``ARROW`` markers of ``length`` [m] (ids from ``first_id``).

    The normals are normalised; a zero normal is an error.
    """
    from visualization_msgs.msg import Marker

    xyz = _array(points, "points", (None, 3))
    direction = _array(normals, "normals", (xyz.shape[0], 3))
    norms = np.linalg.norm(direction, axis=-1, keepdims=True)
    if (norms < 1e-12).any():
        raise InvalidValueError("normals must be non-zero vectors")
    ends = xyz + direction / norms * float(length)
    rgba = _color(color)
    markers = []
    for i, (start, end) in enumerate(zip(xyz, ends)):
        marker = _base(Marker.ARROW, frame_id, stamp, ns, first_id + i, lifetime_s)
        marker.scale.x, marker.scale.y, marker.scale.z = float(shaft_diameter), float(head_diameter), 0.0
        marker.color = rgba
        marker.points = _points(np.stack((start, end)))
        markers.append(marker)
    return markers


def mesh_marker(
    verts: Any,
    faces: Any,
    frame_id: str,
    stamp: int | Any = 0,
    *,
    pose: Any | None = None,
    color: ColorLike = (0.8, 0.3, 0.2, 0.8),
    ns: str = "object_mesh",
    marker_id: int = 0,
    lifetime_s: float = 0.0,
) -> Any:
    """Mesh ``verts (V, 3)`` [m] / ``faces (F, 3)`` int -> a ``TRIANGLE_LIST`` marker.

    ``pose``: ``(4, 4)`` ``mesh2frame`` (e.g. ``object2camera``); ``None`` = identity. Every face becomes 3
    points, so keep meshes to a few thousand faces (decimate first) for message size and RViz.
    """
    from visualization_msgs.msg import Marker

    v = _array(verts, "verts", (None, 3))
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().to("cpu").numpy()
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ShapeError(f"Expected faces to be integers of shape (F, 3); got {f.dtype} {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise InvalidValueError(f"faces index vertices outside 0 .. {v.shape[0] - 1}")
    marker = _base(Marker.TRIANGLE_LIST, frame_id, stamp, ns, marker_id, lifetime_s)
    if pose is not None:
        marker.pose = matrix_to_pose(pose)
    marker.scale.x = marker.scale.y = marker.scale.z = 1.0
    marker.color = _color(color)
    marker.points = _points(v[f.reshape(-1)])
    return marker


def mesh_resource_marker(
    uri: str,
    frame_id: str,
    stamp: int | Any = 0,
    *,
    pose: Any | None = None,
    scale: float = 1.0,
    color: ColorLike = (0.8, 0.3, 0.2, 0.8),
    use_embedded_materials: bool = False,
    ns: str = "object_mesh",
    marker_id: int = 0,
    lifetime_s: float = 0.0,
) -> Any:
    """A ``MESH_RESOURCE`` marker for ``uri`` (``file:///abs/path.obj`` or ``package://pkg/...``)."""
    from visualization_msgs.msg import Marker

    if not uri or "://" not in uri:
        raise InvalidValueError(f"uri must be a file:// or package:// URI; got {uri!r}")
    marker = _base(Marker.MESH_RESOURCE, frame_id, stamp, ns, marker_id, lifetime_s)
    if pose is not None:
        marker.pose = matrix_to_pose(pose)
    marker.scale.x = marker.scale.y = marker.scale.z = float(scale)
    marker.color = _color(color)
    marker.mesh_resource = uri
    marker.mesh_use_embedded_materials = bool(use_embedded_materials)
    return marker


def delete_all_marker(frame_id: str = "", stamp: int | Any = 0, ns: str = "") -> Any:
    """A ``DELETEALL`` marker: RViz drops every marker of this display (all namespaces)."""
    from visualization_msgs.msg import Marker

    marker = Marker()
    marker.header = make_header(stamp, frame_id)
    marker.ns = ns
    marker.action = Marker.DELETEALL
    return marker


def marker_array(markers: Sequence[Any], delete_all_first: bool = True) -> Any:
    """Wrap ``markers`` into a ``MarkerArray``, preceded by a ``DELETEALL`` (stamped like the first marker)."""
    from visualization_msgs.msg import MarkerArray

    items = list(markers)
    counts = collections.Counter((m.ns, m.id) for m in items)
    duplicates = sorted(key for key, count in counts.items() if count > 1)
    if duplicates:
        raise InvalidValueError(f"markers repeat (ns, id) pairs {duplicates}; RViz would keep only one of each")
    if delete_all_first:
        header = items[0].header if items else None
        first = delete_all_marker(header.frame_id if header else "", header.stamp if header else 0)
        items.insert(0, first)
    return MarkerArray(markers=items)
