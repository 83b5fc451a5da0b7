"""URDF reading: XML -> plain dataclasses, ``package://`` resolution and geometry tessellation.

Parsed with lxml (no ROS needed). Only what kinematics and the surface model use is kept: links with their
visual / collision geometry and material colour, joints with origin, axis, limits and mimic. Every problem
raises :class:`ModelFileError` naming the file (and the link, joint or mesh URI).

Mesh URIs are resolved by :class:`PackageResolver` in this order:

1. ``package://pkg/rel``: an explicit ``{pkg: dir}`` mapping; each directory of ``package_paths``
   (``dir/pkg/rel``, or ``dir/rel`` when the directory itself is named ``pkg``); each entry of
   ``$ROS_PACKAGE_PATH`` (same two forms); ``prefix/share/pkg/rel`` for each ``$AMENT_PREFIX_PATH`` prefix;
   finally an ancestor directory of the URDF file named ``pkg``.
2. ``file:///abs/path`` and absolute paths as they are.
3. Relative paths relative to the URDF file's directory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from . import primitives

__all__ = [
    "DEFAULT_TESSELLATION",
    "Geometry",
    "Joint",
    "Link",
    "PackageResolver",
    "Tessellation",
    "URDFModel",
    "geometry_mesh",
    "parse_urdf",
    "parse_urdf_string",
    "rpy_matrix_np",
]

#: Joint types moved by a joint value.
ACTUATED_TYPES = ("revolute", "continuous", "prismatic")
#: Joint types this package reads as fixed (their origin only), with a warning for floating / planar.
FIXED_LIKE_TYPES = ("fixed", "floating", "planar")


@dataclass
class Geometry:
    """One ``<visual>`` or ``<collision>`` element.

    ``kind`` is "box" (``size`` (3,) [m]), "cylinder" (``radius``, ``length`` [m], axis z), "sphere"
    (``radius``) or "mesh" (``filename`` URI as written, ``scale`` (3,)). ``xyz``/``rpy`` is the element's
    origin in its link frame [m, rad]. ``rgba`` is the material colour, or None.
    """

    kind: str
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    size: tuple[float, float, float] | None = None
    radius: float | None = None
    length: float | None = None
    filename: str | None = None
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgba: tuple[float, float, float, float] | None = None


@dataclass
class Link:
    name: str
    visuals: list[Geometry] = field(default_factory=list)
    collisions: list[Geometry] = field(default_factory=list)
    mass: float | None = None


@dataclass
class Joint:
    """One ``<joint>``; ``lower``/``upper`` are +-inf when absent (continuous joints, missing limits)."""

    name: str
    type: str
    parent: str
    child: str
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    lower: float = -math.inf
    upper: float = math.inf
    mimic: tuple[str, float, float] | None = None  # (joint, multiplier, offset)


@dataclass
class URDFModel:
    """A parsed URDF: links and joints in document order, the root link, and where it came from."""

    name: str
    links: list[Link]
    joints: list[Joint]
    root: str
    source: str  # file path or "<string>"
    base_dir: Path | None

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)


# ----------------------------------------------------------------------------------------------- parsing


def _floats(text: str | None, n: int, default: Sequence[float] | None, what: str, source: str) -> tuple:
    if text is None:
        if default is None:
            raise ModelFileError(f"{source}: {what} is missing")
        return tuple(float(v) for v in default)
    try:
        vals = tuple(float(v) for v in text.split())
    except ValueError:
        raise ModelFileError(f"{source}: {what} = {text!r} is not a list of numbers") from None
    if len(vals) == 1 and n == 3 and what.endswith("scale"):
        vals = vals * 3
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise ModelFileError(f"{source}: {what} = {text!r} must hold {n} finite numbers")
    return vals


def _origin(elem, what: str, source: str) -> tuple[tuple, tuple]:
    origin = elem.find("origin")
    if origin is None:
        return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    xyz = _floats(origin.get("xyz"), 3, (0, 0, 0), f"{what} origin xyz", source)
    rpy = _floats(origin.get("rpy"), 3, (0, 0, 0), f"{what} origin rpy", source)
    return xyz, rpy


def _material_rgba(elem, materials: dict, source: str, what: str):
    mat = elem.find("material")
    if mat is None:
        return None
    color = mat.find("color")
    if color is not None and color.get("rgba") is not None:
        rgba = _floats(color.get("rgba"), 4, None, f"{what} material rgba", source)
        if mat.get("name"):
            materials.setdefault(mat.get("name"), rgba)
        return rgba
    return materials.get(mat.get("name"))


def _geometry(elem, what: str, source: str, materials: dict) -> Geometry | None:
    geom = elem.find("geometry")
    if geom is None or len(geom) == 0:
        raise ModelFileError(f"{source}: {what} has no <geometry>")
    shape = next(c for c in geom if isinstance(c.tag, str))
    xyz, rpy = _origin(elem, what, source)
    rgba = _material_rgba(elem, materials, source, what)
    tag = shape.tag
    if tag == "box":
        size = _floats(shape.get("size"), 3, None, f"{what} box size", source)
        return Geometry("box", xyz, rpy, size=size, rgba=rgba)
    if tag == "cylinder":
        r = _floats(shape.get("radius"), 1, None, f"{what} cylinder radius", source)[0]
        h = _floats(shape.get("length"), 1, None, f"{what} cylinder length", source)[0]
        return Geometry("cylinder", xyz, rpy, radius=r, length=h, rgba=rgba)
    if tag == "sphere":
        r = _floats(shape.get("radius"), 1, None, f"{what} sphere radius", source)[0]
        return Geometry("sphere", xyz, rpy, radius=r, rgba=rgba)
    if tag == "mesh":
        filename = shape.get("filename")
        if not filename:
            raise ModelFileError(f"{source}: {what} mesh has no filename")
        scale = _floats(shape.get("scale"), 3, (1, 1, 1), f"{what} mesh scale", source)
        return Geometry("mesh", xyz, rpy, filename=filename, scale=scale, rgba=rgba)
    raise ModelFileError(f"{source}: {what} has unsupported geometry <{tag}> (box, cylinder, sphere, mesh)")


def _parse_root(root, source: str, base_dir: Path | None) -> URDFModel:
    if root.tag != "robot":
        raise ModelFileError(f"{source}: top-level element is <{root.tag}>, expected <robot>")
    materials: dict = {}
    for mat in root.findall("material"):
        color = mat.find("color")
        if mat.get("name") and color is not None and color.get("rgba"):
            materials[mat.get("name")] = _floats(color.get("rgba"), 4, None, "material rgba", source)
    links: list[Link] = []
    for le in root.findall("link"):
        name = le.get("name")
        if not name:
            raise ModelFileError(f"{source}: a <link> (line {le.sourceline}) has no name")
        link = Link(name)
        for i, ve in enumerate(le.findall("visual")):
            link.visuals.append(_geometry(ve, f"link {name!r} visual {i}", source, materials))
        for i, ce in enumerate(le.findall("collision")):
            link.collisions.append(_geometry(ce, f"link {name!r} collision {i}", source, materials))
        inertial = le.find("inertial")
        if inertial is not None and inertial.find("mass") is not None:
            link.mass = _floats(inertial.find("mass").get("value"), 1, None, f"link {name!r} mass", source)[0]
        links.append(link)
    names = [link.name for link in links]
    if not links:
        raise ModelFileError(f"{source}: the robot has no links")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelFileError(f"{source}: duplicate link name(s) {dup}")
    link_set = set(names)
    joints: list[Joint] = []
    for je in root.findall("joint"):
        name, jtype = je.get("name"), je.get("type")
        if not name:
            raise ModelFileError(f"{source}: a <joint> (line {je.sourceline}) has no name")
        what = f"joint {name!r}"
        if jtype not in ACTUATED_TYPES + FIXED_LIKE_TYPES:
            raise ModelFileError(f"{source}: {what} has unknown type {jtype!r}")
        parent, child = je.find("parent"), je.find("child")
        if parent is None or child is None or not parent.get("link") or not child.get("link"):
            raise ModelFileError(f"{source}: {what} needs <parent link=...> and <child link=...>")
        for role, ln in (("parent", parent.get("link")), ("child", child.get("link"))):
            if ln not in link_set:
                raise ModelFileError(f"{source}: {what} names unknown {role} link {ln!r}")
        xyz, rpy = _origin(je, what, source)
        axis_e = je.find("axis")
        axis = _floats(None if axis_e is None else axis_e.get("xyz"), 3, (1, 0, 0), f"{what} axis", source)
        if jtype in ("revolute", "continuous", "prismatic"):
            norm = math.sqrt(sum(a * a for a in axis))
            if norm == 0:
                raise ModelFileError(f"{source}: {what} has a zero axis")
            axis = tuple(a / norm for a in axis)
        lower, upper = -math.inf, math.inf
        limit = je.find("limit")
        if jtype in ("revolute", "prismatic") and limit is not None:
            lower = _floats(limit.get("lower"), 1, (0,), f"{what} limit lower", source)[0]
            upper = _floats(limit.get("upper"), 1, (0,), f"{what} limit upper", source)[0]
            if lower > upper:
                raise ModelFileError(f"{source}: {what} has lower limit {lower} > upper limit {upper}")
        mimic = None
        mim = je.find("mimic")
        if mim is not None and jtype in ACTUATED_TYPES:
            if not mim.get("joint"):
                raise ModelFileError(f"{source}: {what} <mimic> has no joint")
            mult = _floats(mim.get("multiplier"), 1, (1,), f"{what} mimic multiplier", source)[0]
            off = _floats(mim.get("offset"), 1, (0,), f"{what} mimic offset", source)[0]
            mimic = (mim.get("joint"), mult, off)
        joints.append(Joint(name, jtype, parent.get("link"), child.get("link"), xyz, rpy, axis, lower, upper, mimic))
    jnames = [j.name for j in joints]
    dup = sorted({n for n in jnames if jnames.count(n) > 1})
    if dup:
        raise ModelFileError(f"{source}: duplicate joint name(s) {dup}")
    children = [j.child for j in joints]
    dup = sorted({c for c in children if children.count(c) > 1})
    if dup:
        raise ModelFileError(f"{source}: link(s) {dup} have more than one parent joint")
    roots = [n for n in names if n not in set(children)]
    if len(roots) != 1:
        raise ModelFileError(f"{source}: expected exactly one root link (no parent joint); found {roots}")
    # every link must be reachable from the root (no cycles, no disconnected parts)
    reached, frontier = {roots[0]}, [roots[0]]
    by_parent: dict[str, list[str]] = {}
    for j in joints:
        by_parent.setdefault(j.parent, []).append(j.child)
    while frontier:
        nxt = []
        for p in frontier:
            for c in by_parent.get(p, []):
                if c not in reached:
                    reached.add(c)
                    nxt.append(c)
        frontier = nxt
    if reached != link_set:
        raise ModelFileError(f"{source}: link(s) {sorted(link_set - reached)} are not connected to root {roots[0]!r}")
    for j in joints:
        if j.mimic is not None and j.mimic[0] not in jnames:
            raise ModelFileError(f"{source}: joint {j.name!r} mimics unknown joint {j.mimic[0]!r}")
    return URDFModel(root.get("name") or "", links, joints, roots[0], source, base_dir)


def parse_urdf(path: str | os.PathLike) -> URDFModel:
    """Parse a URDF file. ModelFileError names the file when it is missing or malformed."""
    from lxml import etree

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"URDF file not found: {path}")
    try:
        tree = etree.parse(str(path), etree.XMLParser(remove_comments=True))
    except (etree.XMLSyntaxError, OSError) as exc:
        raise ModelFileError(f"URDF file {path} is not valid XML: {exc}") from None
    return _parse_root(tree.getroot(), str(path), path.resolve().parent)


def parse_urdf_string(xml: str, base_dir: str | os.PathLike | None = None) -> URDFModel:
    """Parse URDF XML text (e.g. a ``robot_description`` parameter); relative mesh paths use ``base_dir``."""
    from lxml import etree

    try:
        data = xml.encode() if isinstance(xml, str) else xml
        root = etree.fromstring(data, etree.XMLParser(remove_comments=True))
    except etree.XMLSyntaxError as exc:
        raise ModelFileError(f"URDF string is not valid XML: {exc}") from None
    return _parse_root(root, "<URDF string>", None if base_dir is None else Path(base_dir))


# -------------------------------------------------------------------------------------- package resolution


class PackageResolver:
    """Turns mesh URIs into existing file paths (search order in the module docstring).

    Args:
        package_paths: directories that contain package folders (or are a package folder), or an explicit
            ``{package_name: package_dir}`` mapping.
        base_dir: directory of the URDF file (relative paths, ancestor lookup); None for URDF strings.
        use_environment: also search ``$ROS_PACKAGE_PATH`` and ``$AMENT_PREFIX_PATH``.
    """

    def __init__(
        self,
        package_paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike] = (),
        base_dir: str | os.PathLike | None = None,
        use_environment: bool = True,
    ):
        if isinstance(package_paths, (str, os.PathLike)):
            package_paths = [package_paths]
        if isinstance(package_paths, Mapping):
            self.mapping = {str(k): Path(v) for k, v in package_paths.items()}
            self.search_dirs: list[Path] = []
        else:
            self.mapping = {}
            self.search_dirs = [Path(p) for p in package_paths]
        self.base_dir = None if base_dir is None else Path(base_dir)
        self.use_environment = use_environment

    def candidates(self, package: str, rel: str) -> list[Path]:
        """Every path tried for ``package://package/rel``, in order."""
        out: list[Path] = []
        if package in self.mapping:
            out.append(self.mapping[package] / rel)
        dirs = list(self.search_dirs)
        if self.use_environment:
            dirs += [Path(p) for p in os.environ.get("ROS_PACKAGE_PATH", "").split(os.pathsep) if p]
        for d in dirs:
            out.append(d / package / rel)
            if d.name == package:
                out.append(d / rel)
        if self.use_environment:
            for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
                if prefix:
                    out.append(Path(prefix) / "share" / package / rel)
        if self.base_dir is not None:
            for anc in (self.base_dir, *self.base_dir.parents):
                if anc.name == package:
                    out.append(anc / rel)
                    break
        return out

    def resolve(self, uri: str, source: str = "URDF") -> Path:
        """Existing file for ``uri``; ModelFileError naming the URI, the URDF and the places looked in."""
        if uri.startswith("package://"):
            rest = uri[len("package://"):]
            package, _, rel = rest.partition("/")
            if not package or not rel:
                raise ModelFileError(f"{source}: malformed package URI {uri!r}")
            tried = self.candidates(package, rel)
            for path in tried:
                if path.is_file():
                    return path
            where = ", ".join(str(p) for p in tried) or "nowhere (no package_paths, ROS_PACKAGE_PATH or ament prefix)"
            raise ModelFileError(
                f"{source}: mesh {uri!r} not found; package {package!r} was looked for in: {where}. "
                f"Pass package_paths=[dir containing {package}/] or {{'{package}': dir}}."
            )
        if uri.startswith("file://"):
            path = Path(uri[len("file://"):])
        elif "://" in uri:
            raise ModelFileError(f"{source}: unsupported mesh URI scheme in {uri!r} (package://, file:// or a path)")
        else:
            path = Path(uri)
            if not path.is_absolute():
                if self.base_dir is None:
                    raise ModelFileError(f"{source}: relative mesh path {uri!r} needs the URDF's directory (base_dir)")
                path = self.base_dir / path
        if not path.is_file():
            raise ModelFileError(f"{source}: mesh file for {uri!r} not found: {path}")
        return path


# ------------------------------------------------------------------------------------------- tessellation


@dataclass(frozen=True)
class Tessellation:
    """How primitive URDF geometry becomes triangles.

    ``box_max_edge`` [m]: boxes are subdivided so no grid edge is longer. ``cylinder_sections``: segments
    around a cylinder; ``cylinder_max_edge`` [m]: longest edge along its axis. ``sphere_subdivisions``:
    icosphere level (2 -> 320 faces).
    """

    box_max_edge: float = 0.015
    cylinder_sections: int = 24
    cylinder_max_edge: float = 0.03
    sphere_subdivisions: int = 2


#: The tessellation used unless one is passed (Allegro mesh: about 3-4k faces).
DEFAULT_TESSELLATION = Tessellation()


def rpy_matrix_np(rpy: Sequence[float]) -> np.ndarray:
    """URDF rpy -> (3, 3) float64 numpy matrix, through ``geometry.rotations.rpy_to_matrix``."""
    import torch

    from ..geometry.rotations import rpy_to_matrix

    return rpy_to_matrix(torch.tensor(rpy, dtype=torch.float64)).numpy()


def _load_mesh_file(path: Path, uri: str, source: str, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    key = str(path.resolve())
    if key not in cache:
        import trimesh

        try:
            mesh = trimesh.load(str(path), force="mesh")
        except Exception as exc:  # noqa: BLE001 - trimesh raises many types
            hint = " (.dae needs the pycollada package)" if path.suffix.lower() == ".dae" else ""
            raise ModelFileError(f"{source}: cannot load mesh {uri!r} from {path}{hint}: {exc}") from None
        verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
        faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
        if len(verts) == 0 or len(faces) == 0:
            raise ModelFileError(f"{source}: mesh {uri!r} ({path}) has no triangles")
        cache[key] = (verts, faces)
    return cache[key]


def geometry_mesh(
    geom: Geometry,
    resolver: PackageResolver,
    tess: Tessellation = DEFAULT_TESSELLATION,
    source: str = "URDF",
    cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of one geometry element in its link frame: ``verts (V, 3)`` float64 [m], ``faces (F, 3)``."""
    cache = {} if cache is None else cache
    if geom.kind == "box":
        verts, faces = primitives.box_mesh(geom.size, max_edge=tess.box_max_edge)
    elif geom.kind == "cylinder":
        segs = max(1, math.ceil(geom.length / tess.cylinder_max_edge - 1e-9))
        verts, faces = primitives.cylinder_mesh(geom.radius, geom.length, tess.cylinder_sections, segs)
    elif geom.kind == "sphere":
        verts, faces = primitives.sphere_mesh(geom.radius, tess.sphere_subdivisions)
    else:
        path = resolver.resolve(geom.filename, source)
        verts, faces = _load_mesh_file(path, geom.filename, source, cache)
        verts = verts * np.asarray(geom.scale)
        if np.prod(np.sign(geom.scale)) < 0:  # a mirroring scale flips the winding
            faces = faces[:, ::-1]
    rot = rpy_matrix_np(geom.rpy)
    return verts @ rot.T + np.asarray(geom.xyz), faces
