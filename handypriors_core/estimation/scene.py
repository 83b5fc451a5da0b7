"""The two bodies of a hand-object scene and what every modality needs of them.

``HandObjectScene`` owns the hand model (URDF or MANO, same interface), the object model, the renderer and
the contact queries, so a modality never builds any of them. The hand pose is known per frame (robot hand:
joint states + hand2camera), so :meth:`HandObjectScene.pose_hand` evaluates it once per frame into a
:class:`PosedHand`; the object pose is what the estimators vary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry.camera import PinholeCamera, square_crop_box
from ..geometry.transforms import transform_points, transform_points_array
from ..models.rigid_object import RigidObject
from ..physics.hand_geometry import HandGeometry
from ..physics.sdf import ObjectSDF
from ..physics.settings import ContactSettings
from ..render.renderer import Renderer
from ..render.settings import RenderSettings

__all__ = ["HAND", "OBJECT", "HandObjectScene", "MadeOnFirstRead", "PosedHand", "Silhouettes"]

#: Instance ids in rendered silhouettes.
HAND, OBJECT = 0, 1


class MadeOnFirstRead:
    """Dataclass field holding a tensor, or a function without arguments that makes it on the first read (then
    kept). For per-frame products that some estimators never read: the ROI crops of colour and depth
    (:class:`.observation.Observation`; only the dense modalities read them) and the posed hand's surface points
    (:class:`PosedHand`; the contact modality and the global search read them, the depth filter step does not)."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = f"_{name}_value"

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError(self.slot)  # no class-level default: the field stays required
        value = obj.__dict__[self.slot]
        if callable(value) and not isinstance(value, torch.Tensor):
            value = value()
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj, value) -> None:  # the frozen dataclass's __init__ sets fields through object.__setattr__
        obj.__dict__[self.slot] = value


@dataclass(frozen=True)
class PosedHand:
    """The hand at one frame, in the camera frame (metres); tensors carry a batch dimension of 1.

    Attributes:
        verts: ``(1, Vh, 3)`` hand mesh vertices.
        contact_points: ``(1, C, 3)`` candidate contact points (palm-side surfaces, fingertips).
        surface_points: ``(1, P, 3)`` evenly spread surface points (penetration checks; posed on first read).
        fingertip_centres: ``(1, T, 3)`` fingertip link origins.
        joint_angles: ``(J,)`` [rad]; hand2camera: ``(4, 4)``.
    """

    verts: torch.Tensor
    contact_points: torch.Tensor
    surface_points: torch.Tensor = MadeOnFirstRead()
    fingertip_centres: torch.Tensor
    joint_angles: torch.Tensor
    hand2camera: torch.Tensor


@dataclass(frozen=True)
class Silhouettes:
    """Hard renders of the scene at one object pose in one camera (what the colour model learns from).

    Attributes:
        object_visible: ``(H, W)`` bool, object pixels not hidden by the hand; hand_visible: hand pixels.
        object_full: ``(H, W)`` bool, the object rendered alone; object_depth: its depth [m] there, 0 elsewhere.
    """

    object_visible: torch.Tensor
    hand_visible: torch.Tensor
    object_full: torch.Tensor
    object_depth: torch.Tensor


class HandObjectScene:
    """Hand model + object model + renderer + contact queries on one device.

    Args:
        hand: a hand model with ``mesh``, ``contact_candidates``, ``surface_points``, ``fingertips``
            (:class:`~handypriors_core.models.URDFHand` or the MANO layer).
        obj: the object model (metres, object frame).
        device: torch device of all per-frame work.
        render_settings, contact_settings: component settings (defaults if None).
        fingertip_radius: radius [m] of the fingertip spheres around ``fingertip_centres`` (Allegro: 0.012).
        object_samples: number of object surface samples used by the temporal terms and reverse penetration.
        dtype: floating-point type of the object model and the per-frame work (float32; the MANO optimizer and
            the contact refiner follow their hand's).
    """

    def __init__(
        self,
        hand,
        obj: RigidObject,
        device: str | torch.device = "cpu",
        render_settings: RenderSettings | None = None,
        contact_settings: ContactSettings | None = None,
        fingertip_radius: float = 0.012,
        object_samples: int = 256,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.hand = hand.to(self.device) if hasattr(hand, "to") else hand
        self.object = obj.to(self.device, self.dtype)
        self.renderer = Renderer(render_settings)
        self.object_sdf = ObjectSDF(self.object.verts, self.object.faces, contact_settings)
        self.hand_faces = self.hand.faces.to(self.device)
        self.hand_geometry = HandGeometry(self.hand_faces, contact_settings)
        self.fingertip_radius = float(fingertip_radius)
        step = max(1, self.object.samples.shape[0] // object_samples)
        self.object_samples = self.object.samples[::step][:object_samples].contiguous()  # (S, 3)
        self.object_sample_normals = self.object.sample_normals[::step][:object_samples].contiguous()  # (S, 3)
        verts, faces = self.object.verts, self.object.faces
        self._object_faces = faces
        colors = self.object.vertex_colors
        self.object_vertex_colors = colors if colors is not None else torch.full_like(verts, 0.6)
        self.num_hand_verts = int(self.hand.template_verts.shape[0]) if hasattr(self.hand, "template_verts") else None
        self._hand_closed: bool | None = None
        self._corners: torch.Tensor | None = None

    # ----------------------------------------------------------------------------------------- hand
    def pose_hand(self, joint_angles: torch.Tensor, hand2camera: torch.Tensor) -> PosedHand:
        """Evaluate the hand at ``joint_angles (J,)`` [rad] and ``hand2camera (4, 4)`` in the camera frame."""
        q = joint_angles.to(self.device, self.dtype)[None]
        T = hand2camera.to(self.device, self.dtype)[None]
        if hasattr(self.hand, "posed_surfaces"):  # one forward-kinematics pass (URDF hands)
            verts, contacts, surface, tips = self.hand.posed_surfaces(q, T, defer_surface=True)
            return PosedHand(verts=verts, contact_points=contacts, surface_points=surface, fingertip_centres=tips,
                             joint_angles=q[0], hand2camera=T[0])
        verts, _, _ = self.hand.mesh(q)
        return PosedHand(
            verts=transform_points(T, verts),
            contact_points=transform_points(T, self.hand.contact_candidates(q)),
            surface_points=transform_points(T, self.hand.surface_points(q)),
            fingertip_centres=transform_points(T, self.hand.fingertips(q)),
            joint_angles=q[0],
            hand2camera=T[0],
        )

    def hand_surface_closed(self, hand_verts: torch.Tensor) -> bool:
        """Whether the hand mesh is closed with outward (counter-clockwise) faces, judged once at posed vertices
        ``hand_verts (1, Vh, 3)``: every edge shared by exactly two faces in opposite directions and a positive
        enclosed volume. Then the nearest hand face at any pixel outside the hand faces the camera, so a hand
        z-buffer may skip the faces turned away (the Allegro URDF meshes are; MANO's is open at the wrist)."""
        if self._hand_closed is None:
            f = self.hand_faces
            directed = torch.cat((f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]), 0)
            _, counts = torch.unique(directed.sort(1).values, dim=0, return_counts=True)
            paired = bool((counts == 2).all()) and torch.unique(directed, dim=0).shape[0] == directed.shape[0]
            v = hand_verts[0].double()
            volume = float((v[f[:, 0]] * torch.linalg.cross(v[f[:, 1]], v[f[:, 2]], dim=-1)).sum()) / 6
            self._hand_closed = paired and volume > 0
        return self._hand_closed

    # --------------------------------------------------------------------------------------- object
    @property
    def object_faces(self) -> torch.Tensor:
        """``(Fo, 3)`` long object triangles."""
        return self._object_faces

    def object_verts(self, object2camera: torch.Tensor) -> torch.Tensor:
        """Object mesh vertices ``(B, Vo, 3)`` [m, camera frame] for poses ``object2camera (B, 4, 4)``."""
        return transform_points(object2camera, self.object.verts.expand(object2camera.shape[0], -1, -1))

    def object_sample_points(self, object2camera: torch.Tensor) -> torch.Tensor:
        """Object surface samples ``(B, S, 3)`` [m, camera frame]."""
        return transform_points(object2camera, self.object_samples.expand(object2camera.shape[0], -1, -1))

    def scene_mesh(self, object2camera: torch.Tensor, hand: PosedHand) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
        """Joined hand + object mesh for the renderer.

        Returns ``verts (B, Vh + Vo, 3)`` [m, camera frame], ``faces (Fh + Fo, 3)`` and ``face_instance``
        (:data:`HAND` = 0, :data:`OBJECT` = 1).
        """
        B = object2camera.shape[0]
        obj = self.object_verts(object2camera)
        verts = torch.cat((hand.verts.expand(B, -1, -1), obj), 1)
        if not hasattr(self, "_joined") or self._joined[0].device != verts.device:
            Vh = hand.verts.shape[1]
            faces = torch.cat((self.hand_faces, self._object_faces + Vh), 0)
            inst = torch.cat((torch.full((self.hand_faces.shape[0],), HAND, dtype=torch.long, device=verts.device),
                              torch.full((self._object_faces.shape[0],), OBJECT, dtype=torch.long,
                                         device=verts.device)))
            self._joined = (faces, inst)
        return verts, self._joined[0], self._joined[1]

    def object_bounding_corners(self) -> torch.Tensor:
        """``(8, 3)`` corners of the object's axis-aligned bounding box [m, object frame] (made once: the object is
        rigid; do not modify the returned tensor)."""
        if self._corners is None:
            lo = self.object.verts.min(0).values
            hi = self.object.verts.max(0).values
            idx = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], device=lo.device)
            self._corners = torch.where(idx.bool(), hi, lo)
        return self._corners

    def object_box(self, camera: PinholeCamera, object2camera: torch.Tensor, margin: float,
                   min_box: float) -> tuple[float, float, float, float]:
        """Square crop box ``(x0, y0, x1, y1)`` [px] around the projected bounding box of the object at
        ``object2camera (4, 4)``, grown by ``margin`` on each side and to at least ``min_box`` px
        (:func:`~handypriors_core.geometry.camera.square_crop_box`)."""
        corners = self.object_bounding_corners()
        if corners.device.type == "cpu":  # eight points: numpy, torch's products in torch's order (same values)
            pose = object2camera.detach().to("cpu", self.dtype).numpy()
            return square_crop_box(camera, torch.from_numpy(transform_points_array(pose, corners.numpy())), margin,
                                   min_box)
        corners = transform_points(object2camera[None].to(self.dtype), corners[None])
        return square_crop_box(camera, corners[0], margin, min_box)

    def silhouettes(self, camera: PinholeCamera, object2camera: torch.Tensor, hand: PosedHand) -> Silhouettes:
        """Hard renders (z-buffer, no gradients) of hand + object and of the object alone at ``object2camera
        (4, 4)`` in ``camera``."""
        with torch.no_grad():
            verts, faces, inst = self.scene_mesh(object2camera[None], hand)
            both = self.renderer.hard(verts, faces, camera, face_instance=inst)
            alone = self.renderer.hard(self.object_verts(object2camera[None]), self.object_faces, camera)
        object_full = alone.mask[0]
        return Silhouettes(object_visible=both.instance[0] == OBJECT, hand_visible=both.instance[0] == HAND,
                           object_full=object_full,
                           object_depth=torch.where(object_full, alone.zbuf[0], torch.zeros_like(alone.zbuf[0])))
