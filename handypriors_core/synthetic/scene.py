"""Scene assembly and shading for the generator: hand + object + background clutter through the hard renderer.

:class:`SceneRenderer` joins the posed hand mesh (``URDFHand.mesh(q)`` moved by ``hand2camera``), the posed
object and the static background (table, textured backdrop, random boxes; built once in the camera frame) and
renders them with :meth:`~handypriors_core.render.renderer.Renderer.hard` (face index + barycentrics +
z-buffer). Shading per pixel, all tensor ops on the scene's device:

- albedo from per-corner colours (hand link colours, box colours) or a texture looked up at the barycentric
  interpolation of the face-corner UVs (bilinear, :func:`torch.nn.functional.grid_sample`);
- normal: flat face normals, or crease-angle shading normals for smooth objects; turned towards the camera;
- Lambertian ``albedo * (ambient + diffuse * gain * max(0, n . l))``.

Outputs are the clean (noise-free) linear colour in [0, 1], the z-depth [m] (0 = no surface), the instance
mask (0 background, 1 hand, 2 object) and the number of object pixels visible and when rendered alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry.camera import PinholeCamera
from ..models import URDFHand, primitives
from ..render.renderer import Renderer
from ..render.settings import RenderSettings
from .objects import ObjectMesh, corner_normals
from .scenario import Scenario
from .textures import noise_image, poster_image

__all__ = ["BACKGROUND", "HAND", "OBJECT", "RenderedView", "SceneRenderer", "build_background"]

BACKGROUND, HAND, OBJECT = 0, 1, 2
_CREASE = np.deg2rad(40.0)


@dataclasses.dataclass(frozen=True)
class RenderedView:
    """One clean render. ``rgb (H, W, 3)`` float in [0, 1]; ``depth (H, W)`` z-depth [m], 0 = nothing;
    ``mask (H, W)`` uint8 labels; ``object_visible`` / ``object_alone`` pixel counts (int)."""

    rgb: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    object_visible: int
    object_alone: int

    @property
    def visible_fraction(self) -> float:
        """Visible object pixels / object pixels rendered alone (1.0 when the object is out of view)."""
        return self.object_visible / self.object_alone if self.object_alone else 1.0


@dataclasses.dataclass
class _Part:
    """A static or posed mesh of the scene with its appearance (numpy, float64)."""

    verts: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    corner_colour: np.ndarray  # (F, 3, 3) in [0, 1] (ignored where textured)
    corner_uv: np.ndarray  # (F, 3, 2)
    texture: int  # index into the texture list, -1 = none


def _grid(nu: int, nv: int) -> np.ndarray:
    """Faces of an (nu + 1) x (nv + 1) vertex grid (row-major), counter-clockwise for u x v."""
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a = (i * (nv + 1) + j).ravel()
    b, c, d = a + (nv + 1), a + (nv + 1) + 1, a + 1
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _plane(origin, eu, ev, nu: int, nv: int, texture: int) -> _Part:
    """Rectangle ``origin + s eu + t ev`` (s, t in [0, 1]) subdivided into ``nu x nv`` cells, UVs = (s, t)."""
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
    verts = np.asarray(origin) + s.ravel()[:, None] * np.asarray(eu) + t.ravel()[:, None] * np.asarray(ev)
    faces = _grid(nu, nv)
    uv = np.stack([s.ravel(), t.ravel()], 1)[faces]
    return _Part(verts, faces, np.ones((len(faces), 3, 3)), uv, texture)


def build_background(scenario: Scenario, camera2world: np.ndarray, target: np.ndarray,
                     rng: np.random.Generator) -> tuple[list[_Part], list[np.ndarray]]:
    """Table, backdrop and random boxes in the WORLD frame, and their textures (uint8 images).

    The backdrop stands ``backdrop_distance`` behind ``target`` across the camera's horizontal viewing
    direction; boxes stand on the table behind/beside the target (0.2 m to the backdrop), never in front.
    """
    c = scenario.clutter
    parts: list[_Part] = []
    textures: list[np.ndarray] = []
    if not c.enabled:
        return parts, textures
    eye = camera2world[:3, 3]
    forward = target - eye
    forward[2] = 0.0
    forward /= max(np.linalg.norm(forward), 1e-9)
    side = np.array([-forward[1], forward[0], 0.0])
    size = c.texture_size
    if c.table:
        textures.append(noise_image(rng, size, size, stretch=6.0, cells=5.0,
                                    colours=[(120, 80, 50), (165, 120, 75), (140, 100, 60)]))
        half = 1.0
        centre = np.array([target[0], target[1], c.table_height])
        parts.append(_plane(centre - half * forward - half * side, 2 * half * forward, 2 * half * side, 16, 16,
                            len(textures) - 1))
    if c.backdrop:
        textures.append(poster_image(rng, size, size * 2))
        base = target + c.backdrop_distance * forward
        bottom = c.table_height if c.table else target[2] - 1.0
        width, height = 2.4, 1.6
        parts.append(_plane(np.array([base[0], base[1], bottom]) - 0.5 * width * side, width * side,
                            np.array([0.0, 0.0, height]), 12, 8, len(textures) - 1))
    far = max(0.25, c.backdrop_distance - 0.08)
    for _ in range(c.boxes):
        ext = rng.uniform(c.box_size[0], c.box_size[1], size=3)
        verts, faces = primitives.box_mesh(ext, segments=1)
        yaw = rng.uniform(0, np.pi)
        R = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        along = rng.uniform(0.2, far) if far > 0.2 else far
        pos = target + along * forward + rng.uniform(-0.4, 0.4) * side
        pos[2] = c.table_height + ext[2] / 2
        verts = verts @ R.T + pos
        colour = rng.uniform(0.1, 0.95, size=3)
        shade = rng.uniform(0.8, 1.0, size=(len(faces), 1, 1))
        parts.append(_Part(verts, faces, np.broadcast_to(colour, (len(faces), 3, 3)) * shade,
                           np.zeros((len(faces), 3, 2)), -1))
    return parts, textures


class SceneRenderer:
    """Renders the hand, the object and the static background for one camera (see the module docstring).

    Args:
        scenario: lighting settings are read from it.
        camera: the colour camera (depth is aligned to it).
        hand: the hand model (its ``vertex_colors`` are the link colours).
        mesh: the textured object.
        background: world-frame background parts and textures (:func:`build_background`).
        world2camera: ``(4, 4)`` static camera pose.
        device: where rendering and shading run.
    """

    def __init__(self, scenario: Scenario, camera: PinholeCamera, hand: URDFHand, mesh: ObjectMesh,
                 background: tuple[list[_Part], list[np.ndarray]], world2camera: np.ndarray,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.camera = camera.to(self.device, self.dtype)
        self.hand = hand
        self.lighting = scenario.lighting
        self.renderer = Renderer(RenderSettings())
        f32 = {"dtype": self.dtype, "device": self.device}

        parts, textures = background
        W2C = world2camera
        hand_faces = hand.faces.cpu().numpy()
        hand_colour = hand.vertex_colors.double().cpu().numpy()[hand_faces]
        obj_faces = mesh.faces
        static = [_Part(p.verts @ W2C[:3, :3].T + W2C[:3, 3], p.faces, p.corner_colour, p.corner_uv,
                        p.texture + 1 if p.texture >= 0 else -1) for p in parts]
        self._textures = [mesh.texture] + list(textures)  # texture 0 = the object
        self.num_hand_verts = int(hand.template_verts.shape[0])
        self.num_object_verts = len(mesh.verts)
        self._static_verts = torch.as_tensor(
            np.concatenate([p.verts for p in static]) if static else np.zeros((0, 3)), **f32)

        # scene order: hand, object, static parts; per-face tables
        faces, colour, uv, tex, label, offset = [], [], [], [], [], 0
        blocks = [(hand_faces, hand_colour, np.zeros((len(hand_faces), 3, 2)), -1, HAND, self.num_hand_verts),
                  (obj_faces, np.ones((len(obj_faces), 3, 3)), mesh.face_uv, 0, OBJECT, self.num_object_verts)]
        blocks += [(p.faces, p.corner_colour, p.corner_uv, p.texture, BACKGROUND, len(p.verts)) for p in static]
        for fcs, col, fuv, t, lab, nv in blocks:
            faces.append(fcs + offset)
            colour.append(col)
            uv.append(fuv)
            tex.append(np.full(len(fcs), t))
            label.append(np.full(len(fcs), lab))
            offset += nv
        self.faces = torch.as_tensor(np.concatenate(faces), dtype=torch.long, device=self.device)
        self.corner_colour = torch.as_tensor(np.concatenate(colour), **f32)
        self.corner_uv = torch.as_tensor(np.concatenate(uv), **f32)
        self.face_texture = torch.as_tensor(np.concatenate(tex), dtype=torch.long, device=self.device)
        self.face_label = torch.as_tensor(np.concatenate(label), dtype=torch.long, device=self.device)
        self.textures = [torch.as_tensor(t, device=self.device).permute(2, 0, 1)[None].to(self.dtype) / 255.0
                         for t in self._textures]
        self.object_faces = torch.as_tensor(obj_faces, dtype=torch.long, device=self.device)
        self.object_verts = torch.as_tensor(mesh.verts, **f32)
        crease = _CREASE if mesh.smooth else None
        self.object_corner_normals = torch.as_tensor(corner_normals(mesh.verts, obj_faces, crease), **f32)
        n_static = len(self.faces) - len(hand_faces) - len(obj_faces)
        self._n_hand_faces, self._n_obj_faces, self._n_static_faces = len(hand_faces), len(obj_faces), n_static
        # the camera and the background are static: rasterise the background once, composite per frame
        n_dyn = len(hand_faces) + len(obj_faces)
        self._dynamic_faces = self.faces[:n_dyn]
        self._static = None
        if n_static:
            local = self.faces[n_dyn:] - (self.num_hand_verts + self.num_object_verts)
            face, bary, zbuf = self._rasterize(self._static_verts, local)
            self._static = (torch.where(face >= 0, face + n_dyn, face), bary, zbuf)
        # pixel rays (for turning normals towards the camera)
        H, W = camera.height, camera.width
        v, u = torch.meshgrid(torch.arange(H, **f32), torch.arange(W, **f32), indexing="ij")
        cam = self.camera
        self._rays = torch.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, torch.ones_like(u)], -1)

    # ------------------------------------------------------------------------------------------ helpers
    def _rasterize(self, verts: torch.Tensor, faces: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Z-buffer of the camera-frame mesh ``verts (V, 3)`` [m], ``faces (F, 3)``: ``face (H, W)`` (-1 = nothing),
        perspective-correct ``bary (H, W, 3)`` and ``zbuf (H, W)`` [m] (0 = nothing), by ``Renderer.hard``."""
        out = self.renderer.hard(verts[None], faces, self.camera)
        return out.face[0], out.bary[0], out.zbuf[0]

    @staticmethod
    def _face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        tri = verts[faces]
        n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-20)

    def _sample(self, texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """Bilinear lookup of ``texture (1, 3, Ht, Wt)`` at ``uv (P, 2)`` (OBJ convention) -> ``(P, 3)``."""
        grid = torch.stack([2.0 * uv[:, 0] - 1.0, 1.0 - 2.0 * uv[:, 1]], -1)[None, None]
        out = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out[0, :, 0].T

    def object_pixels(self, object2camera: torch.Tensor) -> torch.Tensor:
        """``(H, W)`` bool silhouette of the object rendered alone."""
        verts = self.object_verts @ object2camera[:3, :3].T + object2camera[:3, 3]
        return self._rasterize(verts, self.object_faces)[0] >= 0

    # ------------------------------------------------------------------------------------------ render
    def render(self, q: torch.Tensor, hand2camera: torch.Tensor, object2camera: torch.Tensor,
               light_dir_cam: torch.Tensor, light_gain: float) -> RenderedView:
        """Clean render for joint angles ``q (J,)``, poses ``(4, 4)`` and the key light (camera frame)."""
        f32 = {"dtype": self.dtype, "device": self.device}
        q = torch.as_tensor(q, dtype=self.hand.dtype, device=self.hand.device)
        H2C = torch.as_tensor(hand2camera, **f32)
        O2C = torch.as_tensor(object2camera, **f32)
        hand_verts = self.hand.mesh(q[None])[0][0].to(**f32) @ H2C[:3, :3].T + H2C[:3, 3]
        obj_verts = self.object_verts @ O2C[:3, :3].T + O2C[:3, 3]
        verts = torch.cat([hand_verts, obj_verts, self._static_verts], 0)
        face, bary, zbuf = self._rasterize(verts[: self.num_hand_verts + self.num_object_verts], self._dynamic_faces)
        if self._static is not None:  # nearest of the posed meshes and the static background
            s_face, s_bary, s_zbuf = self._static
            use_static = (s_face >= 0) & ((face < 0) | (s_zbuf < zbuf))
            face = torch.where(use_static, s_face, face)
            bary = torch.where(use_static[..., None], s_bary, bary)
            zbuf = torch.where(use_static, s_zbuf, zbuf)
        valid = face >= 0
        fc = face.clamp_min(0)

        # shading normals per face corner: flat, object smooth when asked
        flat = self._face_normals(verts, self.faces)
        corner_n = flat[:, None, :].expand(-1, 3, -1).clone()
        nh, no = self._n_hand_faces, self._n_obj_faces
        corner_n[nh:nh + no] = self.object_corner_normals @ O2C[:3, :3].T
        normal = (bary[..., None] * corner_n[fc]).sum(-2)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        normal = torch.where(((normal * self._rays).sum(-1) > 0)[..., None], -normal, normal)

        albedo = (bary[..., None] * self.corner_colour[fc]).sum(-2)
        tex = torch.where(valid, self.face_texture[fc], torch.full_like(fc, -1))
        for t, texture in enumerate(self.textures):
            sel = tex == t
            if bool(sel.any()):
                uv = (bary[sel][..., None] * self.corner_uv[fc[sel]]).sum(-2)
                albedo[sel] = self._sample(texture, uv)

        light = torch.as_tensor(light_dir_cam, **f32)
        light = light / light.norm().clamp_min(1e-12)
        lambert = (normal * light).sum(-1).clamp_min(0.0)
        shade = self.lighting.ambient + self.lighting.diffuse * float(light_gain) * lambert
        rgb = torch.where(valid[..., None], albedo * shade[..., None], torch.full_like(albedo, 0.03))
        mask = torch.where(valid, self.face_label[fc], torch.zeros_like(fc)).to(torch.uint8)
        visible = int((mask == OBJECT).sum())
        alone = int(self.object_pixels(O2C).sum())
        return RenderedView(rgb.clamp(0.0, 1.0), zbuf, mask, visible, alone)
