"""Reader of the development-sequence folder format (``docs/sequence_format.md`` is the full specification).

The same format is read for the shipped MuJoCo development sequences and for the project's own synthetic
sequences, so one loader and one scorer serve both::

    <sequence>/
      meta.json          SENSOR side: camera, depth encoding, hand joint names, per-frame stamps, joint
                         positions [rad] and hand base pose in the camera frame, object mesh path
      rgb/NNNNNN.png     uint8 RGB (stored as an ordinary 8-bit colour PNG), H x W
      depth/NNNNNN.png   uint16 z-depth aligned to colour; metres = value * depth.scale_to_m; depth.invalid = none
      object/model.obj   object mesh in the object frame [m] (an input: the tracker is model-based)
      gt.json            GROUND TRUTH: object2camera per frame, contacts, visible fraction   (scoring only)
      mask/NNNNNN.png    ORACLE instance mask (0 background, 1 hand, 2 object)             (oracle runs only)

What may be read by whom is kept structurally apart:

- :class:`DevSequence` (the tracker's input) reads only ``meta.json``, ``rgb/``, ``depth/`` and reports the
  object mesh path. It never opens ``gt.json`` or ``mask/`` and works when they are absent.
- :func:`load_ground_truth` reads ``gt.json``, for scoring (and, where an experiment says so and reports it,
  the frame-0 initial pose).
- :func:`load_oracle_masks` / :func:`oracle_masks` / :func:`with_oracle_masks` read ``mask/``; use them only in
  runs explicitly labelled "oracle mask".

Units: metres, radians, seconds; poses are 4x4 ``<from>2<to>`` matrices in the camera optical frame
(x right, y down, z forward); depth is converted to float32 metres with NaN for invalid pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidValueError
from ..geometry.camera import PinholeCamera
from .frame import Frame
from .json_file import read_json

__all__ = [
    "DevSequence",
    "FrameContacts",
    "GroundTruth",
    "load_ground_truth",
    "load_oracle_masks",
    "oracle_masks",
    "with_oracle_masks",
]


# ------------------------------------------------------------------------------------------------- helpers
def _read_json(path: Path) -> dict:
    data = read_json(path, "sequence file")
    if not isinstance(data, dict):
        raise InvalidValueError(f"{path} must hold a JSON object at top level")
    return data


def _get(data: dict, key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise InvalidValueError(f"{where}: missing field {key!r}")
    return data[key]


def _matrix(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"{where} must be numbers of shape {shape}; got {value!r}") from exc
    if arr.shape != shape:
        raise InvalidValueError(f"{where} must have shape {shape}; got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidValueError(f"{where} contains non-finite values")
    return arr


def _pose(entry: Any, where: str) -> np.ndarray:
    """``{"R": 3x3, "t": 3}`` -> ``(4, 4)`` float64 (``quat_xyzw`` in the file is redundant and not used)."""
    T = np.eye(4)
    T[:3, :3] = _matrix(_get(entry, "R", where), (3, 3), f"{where}.R")
    T[:3, 3] = _matrix(_get(entry, "t", where), (3,), f"{where}.t")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-5) or np.linalg.det(R) <= 0:
        raise InvalidValueError(f"{where}.R is not a rotation matrix")
    return T


def _read_png(path: Path, unchanged: bool) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise InvalidValueError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidValueError(f"cannot decode image {path}")
    return image


# ------------------------------------------------------------------------------------------------- input side
class DevSequence:
    """Sensor-side reader of one sequence folder: ``len(seq)``, ``seq[i]`` and ``seq.frames()`` give :class:`Frame`.

    Never reads ground truth (``gt.json``) or oracle masks (``mask/``); see the module docstring.

    Attributes:
        path: the sequence folder. ``name``: ``meta["sequence"]`` or the folder name.
        camera: :class:`PinholeCamera` (float32) of the colour (and aligned depth) images.
        camera_frame_id: optical frame name (``camera.frame_id``); ``hand_root_frame``: hand root link name.
        joint_names: hand joint names in ``joint_positions`` order; ``base_moving``: hand base moves or not.
        object_mesh_path: absolute path of the object mesh; ``object_name``, ``object_mass_kg`` (None if absent).
        stamps: ``(N,)`` float64 frame stamps [s]; ``fps``: nominal frame rate (None if absent).
    """

    def __init__(self, path: str | Path, dtype: torch.dtype = torch.float32) -> None:
        """``path``: sequence folder; ``dtype``: float dtype of joint angles and poses in the Frames."""
        self.path = Path(path)
        self.dtype = dtype
        meta_path = self.path / "meta.json"
        meta = _read_json(meta_path)
        where = str(meta_path)
        self.name: str = str(meta.get("sequence", self.path.name))
        self.fps: float | None = float(meta["fps"]) if "fps" in meta else None

        cam = _get(meta, "camera", where)
        K = _matrix(_get(cam, "K", f"{where}: camera"), (3, 3), f"{where}: camera.K")
        width = int(_get(meta, "width", where))
        height = int(_get(meta, "height", where))
        D = np.asarray(cam.get("D", []), dtype=np.float64).reshape(-1)
        self.camera = PinholeCamera.from_camera_info(
            K.reshape(-1).tolist(), D.tolist(), width, height, str(cam.get("distortion_model", "plumb_bob"))
        )
        self.camera_frame_id: str = str(cam.get("frame_id", "camera_color_optical_frame"))

        depth = meta.get("depth", {})
        self.depth_scale_to_m = float(depth.get("scale_to_m", 0.001))
        self.depth_invalid = int(depth.get("invalid", 0))
        if not (math.isfinite(self.depth_scale_to_m) and self.depth_scale_to_m > 0):
            raise InvalidValueError(f"{where}: depth.scale_to_m must be > 0; got {self.depth_scale_to_m}")

        hand = _get(meta, "hand", where)
        self.joint_names: tuple[str, ...] = tuple(str(n) for n in _get(hand, "joint_names", f"{where}: hand"))
        self.hand_root_frame: str = str(hand.get("root_frame", "hand_root"))
        self.base_moving: bool = bool(hand.get("base_moving", True))

        obj = _get(meta, "object", where)
        self.object_mesh_path = (self.path / str(_get(obj, "mesh", f"{where}: object"))).resolve()
        self.object_name: str = str(obj.get("name", self.object_mesh_path.stem))
        self.object_mass_kg: float | None = float(obj["mass_kg"]) if "mass_kg" in obj else None

        frames = _get(meta, "frames", where)
        if not isinstance(frames, list) or not frames:
            raise InvalidValueError(f"{where}: frames must be a non-empty list")
        self._entries: list[dict] = []
        stamps = []
        for i, entry in enumerate(frames):
            w = f"{where}: frames[{i}]"
            if int(_get(entry, "index", w)) != i:
                raise InvalidValueError(f"{w}.index must be {i}; got {entry['index']!r}")
            q = _matrix(_get(entry, "joint_positions", w), (len(self.joint_names),), f"{w}.joint_positions")
            self._entries.append(
                {
                    "stamp": float(_get(entry, "stamp", w)),
                    "rgb": str(entry.get("rgb", f"rgb/{i:06d}.png")),
                    "depth": entry.get("depth", f"depth/{i:06d}.png"),
                    "joint_positions": q,
                    "hand2camera": _pose(_get(entry, "hand_base_pose_cam", w), f"{w}.hand_base_pose_cam"),
                }
            )
            stamps.append(self._entries[-1]["stamp"])
        self.stamps = np.asarray(stamps, dtype=np.float64)
        if not (np.isfinite(self.stamps).all() and (np.diff(self.stamps) > 0).all()):
            raise InvalidValueError(f"{where}: frame stamps must be finite and strictly increasing")

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DevSequence({str(self.path)!r}, frames={len(self)}, object={self.object_name!r})"

    def __getitem__(self, index: int) -> Frame:
        """Frame ``index`` (negative indices count from the end); no masks (see :func:`with_oracle_masks`)."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise IndexError(f"frame index {index!r} out of range for {n} frames")
        index = int(index) % n
        entry = self._entries[index]
        bgr = _read_png(self.path / entry["rgb"], unchanged=False)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        depth = None
        if entry["depth"]:
            depth = self.read_depth(self.path / entry["depth"])
        return Frame(
            index=index,
            stamp=entry["stamp"],
            rgb=torch.from_numpy(rgb),
            camera=self.camera,
            joint_angles=torch.from_numpy(entry["joint_positions"]).to(self.dtype),
            hand2camera=torch.from_numpy(entry["hand2camera"]).to(self.dtype),
            depth=depth,
            joint_names=self.joint_names,
        )

    def frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[Frame]:
        """Frames ``start, start + step, ... < stop`` in order (loaded lazily)."""
        for index in range(len(self))[start:stop:step]:
            yield self[index]

    def read_depth(self, path: Path) -> torch.Tensor:
        """``(H, W)`` float32 metres from a uint16 PNG; ``depth.invalid`` pixels become NaN."""
        raw = _read_png(path, unchanged=True)
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise InvalidValueError(f"depth image {path} must be single-channel uint16; got {raw.dtype} {raw.shape}")
        depth = torch.from_numpy(raw.astype(np.float32)) * self.depth_scale_to_m
        return depth.masked_fill_(torch.from_numpy(raw == self.depth_invalid), math.nan)

    def hand2camera(self) -> torch.Tensor:
        """``(N, 4, 4)`` hand root poses in the camera frame for all frames (sensor data)."""
        return torch.from_numpy(np.stack([e["hand2camera"] for e in self._entries])).to(self.dtype)

    def joint_positions(self) -> torch.Tensor:
        """``(N, J)`` joint positions [rad] for all frames (sensor data)."""
        return torch.from_numpy(np.stack([e["joint_positions"] for e in self._entries])).to(self.dtype)


# ------------------------------------------------------------------------------------------------- ground truth
@dataclass(frozen=True, eq=False)
class FrameContacts:
    """Ground-truth hand-object contacts of one frame (``C`` may be 0).

    Attributes:
        links: ``C`` hand link names (URDF names; palm = ``base_link``).
        pos_cam: ``(C, 3)`` float64 contact points, camera frame [m]. ``pos_obj``: same points, object frame.
        normal_cam: ``(C, 3)`` unit normals from the hand into the object, camera frame.
        normal_force: ``(C,)`` [N]. ``penetration``: ``(C,)`` [m], > 0 means overlap.
    """

    links: tuple[str, ...]
    pos_cam: torch.Tensor
    pos_obj: torch.Tensor
    normal_cam: torch.Tensor
    normal_force: torch.Tensor
    penetration: torch.Tensor

    def __len__(self) -> int:
        return len(self.links)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """GROUND TRUTH of a sequence, for scoring only.

    Attributes:
        object2camera: ``(N, 4, 4)`` float64 object poses in the camera frame [m].
        stamps: ``(N,)`` float64 [s].
        contacts: ``N`` :class:`FrameContacts`.
        visible_fraction: ``(N,)`` float64 visible / unoccluded object pixels (NaN where not given).
        symmetry: free-text description of the object's symmetry ("" if not given).
    """

    object2camera: torch.Tensor
    stamps: torch.Tensor
    contacts: tuple[FrameContacts, ...]
    visible_fraction: torch.Tensor
    symmetry: str = ""

    def __len__(self) -> int:
        return self.object2camera.shape[0]


def _gt_path(path: str | Path) -> Path:
    path = Path(path)
    return path / "gt.json" if path.is_dir() else path


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read GROUND TRUTH (``gt.json``) of the sequence folder ``path`` (or of the file itself). Scoring only."""
    gt_path = _gt_path(path)
    data = _read_json(gt_path)
    where = str(gt_path)
    frames = _get(data, "frames", where)
    if not isinstance(frames, list) or not frames:
        raise InvalidValueError(f"{where}: frames must be a non-empty list")
    poses, stamps, visible, contacts = [], [], [], []
    for i, entry in enumerate(frames):
        w = f"{where}: frames[{i}]"
        if int(_get(entry, "index", w)) != i:
            raise InvalidValueError(f"{w}.index must be {i}; got {entry['index']!r}")
        poses.append(_pose(_get(entry, "object_pose_cam", w), f"{w}.object_pose_cam"))
        stamps.append(float(entry.get("stamp", math.nan)))
        visible.append(float(entry.get("visible_fraction", math.nan)))
        items = entry.get("contacts", [])
        c = len(items)

        def field(key: str, shape: tuple[int, ...], items=items, w=w) -> torch.Tensor:
            rows = [_matrix(_get(it, key, f"{w}.contacts[{j}]"), shape, f"{w}.contacts[{j}].{key}")
                    for j, it in enumerate(items)]
            return torch.from_numpy(np.stack(rows) if rows else np.zeros((0, *shape)))

        contacts.append(
            FrameContacts(
                links=tuple(str(_get(it, "link", f"{w}.contacts[{j}]")) for j, it in enumerate(items)),
                pos_cam=field("pos_cam", (3,)),
                pos_obj=field("pos_obj", (3,)),
                normal_cam=field("normal_cam_hand_to_obj", (3,)),
                normal_force=field("normal_force", ()).reshape(c),
                penetration=field("penetration", ()).reshape(c),
            )
        )
    symmetry = data.get("object", {}).get("symmetry", "") if isinstance(data.get("object"), dict) else ""
    return GroundTruth(
        object2camera=torch.from_numpy(np.stack(poses)),
        stamps=torch.tensor(stamps, dtype=torch.float64),
        contacts=tuple(contacts),
        visible_fraction=torch.tensor(visible, dtype=torch.float64),
        symmetry=str(symmetry),
    )


# ------------------------------------------------------------------------------------------------- oracle masks
def _mask_labels(meta: dict, where: str) -> tuple[int, int]:
    values = meta.get("mask", {}).get("values", {"1": "hand", "2": "object"})
    labels: dict[str, int] = {}
    for key, meaning in values.items():
        word = str(meaning).split()[0].lower() if str(meaning).strip() else ""
        labels.setdefault(word, int(key))
    if "hand" not in labels or "object" not in labels:
        raise InvalidValueError(f"{where}: mask.values must name 'hand' and 'object' labels; got {values}")
    return labels["object"], labels["hand"]


def load_oracle_masks(path: str | Path, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ORACLE (perfect, renderer-given) masks of frame ``index``: ``(object_mask, hand_mask)``, each ``(H, W)``
    float32 in {0, 1}. Only for runs labelled "oracle mask"; a tracker's own segmentation must not read these.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    meta = _read_json(meta_path)
    frames = _get(meta, "frames", str(meta_path))
    if not 0 <= index < len(frames):
        raise IndexError(f"frame index {index} out of range for {len(frames)} frames")
    obj_label, hand_label = _mask_labels(meta, str(meta_path))
    mask_path = path / str(frames[index].get("mask", f"mask/{index:06d}.png"))
    labels = _read_png(mask_path, unchanged=True)
    if labels.ndim != 2:
        raise InvalidValueError(f"mask image {mask_path} must be single-channel; got shape {labels.shape}")
    labels = torch.from_numpy(labels.astype(np.int64))
    return (labels == obj_label).to(torch.float32), (labels == hand_label).to(torch.float32)


def oracle_masks(path: str | Path) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """ORACLE masks of every frame: yields ``(index, object_mask, hand_mask)`` (see :func:`load_oracle_masks`)."""
    n = len(_get(_read_json(Path(path) / "meta.json"), "frames", str(Path(path) / "meta.json")))
    for index in range(n):
        yield (index, *load_oracle_masks(path, index))


def with_oracle_masks(frame: Frame, path: str | Path) -> Frame:
    """Copy of ``frame`` carrying the ORACLE masks of its index (for runs labelled "oracle mask" only)."""
    object_mask, hand_mask = load_oracle_masks(path, frame.index)
    return frame.with_masks(object_mask, hand_mask)
