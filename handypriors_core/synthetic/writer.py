"""Write a :class:`~.generate.SyntheticSequence` in the development-sequence folder format, plus a rosbag2.

Layout (``docs/sequence_format.md``; the same as the shipped MuJoCo development sequences)::

    <out>/rgb/NNNNNN.png  depth/NNNNNN.png (uint16 mm, 0 = no return)  mask/NNNNNN.png (ORACLE)
    <out>/meta.json (sensor side)  gt.json (GROUND TRUTH)  object/model.obj + model.mtl + texture.png
    <out>/overlay.png (frames 0 / middle / last: hand blue, visible object red, ground-truth outline green,
                       object axes x red / y green / z blue 5 cm, contacts yellow)
    <out>/bag/ (rosbag2 MCAP of the sensor data only, no ground truth; see below)

Bag topics (``BagSettings``): ``<ns>/color/image_raw`` (rgb8) + ``<ns>/color/camera_info``,
``<ns>/aligned_depth_to_color/image_raw`` (16UC1 mm) + its ``camera_info``, joint states at
``joint_rate_factor`` x the camera rate (linear interpolation between frame joint positions, velocity = the
segment's slope, no effort; every k-th message carries a camera stamp exactly; names of the joint scheme),
``/tf_static`` once (camera optical frame -> hand root when the base is fixed, else an empty message so the
topic exists; transient-local QoS) and, when the base moves, ``/tf`` camera optical frame -> hand root at the
joint-state rate. Header stamps equal log times. The joint states, TF and ``meta.json`` carry the measured
(faulty, :mod:`.faults`) hand state; ``gt.json`` records the faults under ``faults``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import defaults
from ..errors import InvalidValueError
from ..geometry.rotations import matrix_to_quaternion
from ..geometry.transforms import rotation_angle_between
from ..models.joint_maps import JointMap
from .scene import HAND, OBJECT

if TYPE_CHECKING:
    from .generate import Progress, SyntheticFrame, SyntheticSequence

__all__ = ["GENERATED_ENTRIES", "driver_joint_order", "pose_json", "write_sequence"]

#: What the writer creates in a sequence folder (replaced with ``overwrite``).
GENERATED_ENTRIES = ("rgb", "depth", "mask", "object", "bag", "meta.json", "gt.json", "overlay.png")
HAND_ROOT_FRAME = defaults.HAND_ROOT_FRAME


def _floats(a) -> list:
    return np.asarray(a, np.float64).tolist()


def pose_json(T: np.ndarray) -> dict:
    """``{"R", "t", "quat_xyzw"}`` of a 4x4 pose (plain floats)."""
    T = np.asarray(T, np.float64)
    quat = matrix_to_quaternion(torch.as_tensor(T[:3, :3])).tolist()
    return {"R": _floats(T[:3, :3]), "t": _floats(T[:3, 3]), "quat_xyzw": quat}


def driver_joint_order(scheme: str, urdf_names: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """Driver joint names of ``scheme`` (a ``config/joint_maps`` map) sorted by name, and for each the index of
    its URDF joint in ``urdf_names``."""
    jmap = JointMap.shipped(scheme)
    names = sorted((jmap.driver_name(u) for u in urdf_names), key=lambda n: (len(n), n))
    index = [urdf_names.index(jmap.urdf_name(n)) for n in names]
    return names, index


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidValueError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InvalidValueError(f"output folder {out} is not empty (pass overwrite=True / --overwrite)")
        for name in GENERATED_ENTRIES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for sub in ("rgb", "depth", "mask"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def _imwrite(path: Path, image: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), image):
        raise InvalidValueError(f"cannot write image {path}")


def _overlay(seq: SyntheticSequence, frames: list[SyntheticFrame]) -> np.ndarray:
    """Visual check of the ground truth on a few frames (RGB uint8, side by side)."""
    import cv2

    tiles = []
    K = seq.camera.K.double().numpy()
    for fr in frames:
        img = fr.rgb.numpy().astype(np.float32)
        mask = fr.mask.numpy()
        for label, colour in ((HAND, (40, 90, 255)), (OBJECT, (255, 40, 40))):
            sel = mask == label
            img[sel] = 0.5 * img[sel] + 0.5 * np.asarray(colour, np.float32)
        img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
        O2C = seq.object2camera[fr.index]
        alone = seq.scene.object_pixels(torch.as_tensor(O2C, dtype=torch.float32, device=seq.device))
        contours, _ = cv2.findContours(alone.cpu().numpy().astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, (40, 220, 40), 1)

        def project(p_cam):
            p = np.asarray(p_cam, np.float64)
            if p[2] <= 1e-6:
                return None
            uv = K @ (p / p[2])
            return round(uv[0]), round(uv[1])

        origin = project(O2C[:3, 3])
        for axis, colour in ((0, (255, 0, 0)), (1, (0, 255, 0)), (2, (0, 0, 255))):
            end = project(O2C[:3, 3] + 0.05 * O2C[:3, axis])
            if origin and end:
                cv2.line(img, origin, end, colour, 2, cv2.LINE_AA)
        for p in seq.frame_contacts(fr.index).pos_cam.numpy():
            uv = project(p)
            if uv:
                cv2.circle(img, uv, 3, (255, 230, 0), -1, cv2.LINE_AA)
        tiles.append(img)
    return np.concatenate(tiles, axis=1)


def _summary(seq: SyntheticSequence, visible: list[float]) -> dict:
    O2C = seq.object2camera
    t = O2C[:, :3, 3]
    R = torch.as_tensor(O2C[:, :3, :3])
    angle = rotation_angle_between(R[:1].expand_as(R), R).numpy()
    after = range(seq.trajectory.close_frames - 1, len(seq))
    fingers = [len(seq.fingers_in_contact(i)) for i in range(len(seq))]
    s = seq.scenario
    return {
        "generator": "handypriors_core.synthetic (kinematic: contacts are geometric; normal_force is not simulated "
                     "and written as 0)",
        "seed": s.seed,
        "object": s.object.kind,
        "motion": s.motion.kind,
        "frames": len(seq),
        "close_frames": seq.trajectory.close_frames,
        "base_moving": bool(seq.trajectory.base_moving),
        "object_motion_max_translation_m": float(np.linalg.norm(t - t[:1], axis=1).max()),
        "object_motion_max_rotation_deg": float(np.degrees(angle.max())),
        "contacts_per_frame_mean": float(np.mean([len(c) for c in seq.contacts])),
        "fingers_in_contact": fingers,
        "fingers_in_contact_min_after_close": int(min(fingers[i] for i in after)),
        "visible_fraction_mean": float(np.mean(visible)),
        "visible_fraction_min": float(np.min(visible)),
        "max_penetration_mm": float(seq.penetration.max() * 1e3),
        "contact_threshold_mm": s.grasp.contact_threshold * 1e3,
    }


def write_sequence(seq: SyntheticSequence, out_dir: str | Path, progress: Progress | None = None,
                   overwrite: bool = False) -> Path:
    """Write ``seq`` to ``out_dir`` (see the module docstring); returns the folder."""
    from ..io.rosbag_writer import SensorBagWriter

    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    _prepare(out, overwrite)
    s = seq.scenario
    traj = seq.trajectory
    N = len(seq)
    obj_path = seq.object_mesh.write_obj(out / "object")
    cam_frame = s.camera.frame_id
    bag = None
    if s.bag.enabled:
        bag = SensorBagWriter(out / "bag", typestore=s.bag.typestore, version=8)
        ns = s.bag.camera_namespace
        topics = {"color": f"{ns}/color/image_raw", "color_info": f"{ns}/color/camera_info",
                  "depth": f"{ns}/aligned_depth_to_color/image_raw",
                  "depth_info": f"{ns}/aligned_depth_to_color/camera_info",
                  "joint_states": s.bag.resolved_joint_topic(), "tf": "/tf", "tf_static": "/tf_static"}
        driver_names, driver_index = driver_joint_order(s.bag.joint_scheme, seq.joint_names)
    k = s.bag.joint_rate_factor

    meta_frames, gt_frames, visible, keep = [], [], [], {}
    overlay_frames = sorted({0, N // 2, N - 1})
    t_start = time.perf_counter()
    for i in range(N):
        fr = seq.render(i)
        _imwrite(out / "rgb" / f"{i:06d}.png", np.ascontiguousarray(fr.rgb.numpy()[..., ::-1]))
        _imwrite(out / "depth" / f"{i:06d}.png", fr.depth_mm)
        _imwrite(out / "mask" / f"{i:06d}.png", fr.mask.numpy())
        visible.append(fr.visible_fraction)
        if i in overlay_frames:
            keep[i] = fr
        stamp_ns = int(traj.stamps_ns[i])
        if bag is not None:
            if i == 0:
                static = [] if traj.base_moving else [(cam_frame, HAND_ROOT_FRAME, seq.hand2camera[0])]
                bag.transforms(topics["tf_static"], stamp_ns, static, static=True)
                sub = [(0.0, stamp_ns)]
            else:
                prev = int(traj.stamps_ns[i - 1])
                sub = [(j / k, prev + round(j * (stamp_ns - prev) / k)) for j in range(1, k + 1)]
            q_prev = seq.joint_positions[max(i - 1, 0)]  # as measured (faults of the scenario)
            q_now = seq.joint_positions[i]
            dt = (stamp_ns - int(traj.stamps_ns[max(i - 1, 0)])) * 1e-9
            velocity = (q_now - q_prev) / dt if i > 0 else np.zeros_like(q_now)
            for w, t_ns in sub:
                q = q_now if w == 1.0 or i == 0 else q_prev + w * (q_now - q_prev)
                bag.joint_state(topics["joint_states"], t_ns, driver_names, q[driver_index], velocity[driver_index])
                if traj.base_moving:
                    pose = seq.hand2camera[i] if w == 1.0 or i == 0 else \
                        seq.faults.measured_hand2camera(traj.hand2camera_at(i - 1 + w))
                    bag.transforms(topics["tf"], t_ns, [(cam_frame, HAND_ROOT_FRAME, pose)])
            bag.image(topics["color"], stamp_ns, fr.rgb.numpy(), cam_frame)
            bag.camera_info(topics["color_info"], stamp_ns, seq.camera, cam_frame)
            bag.image(topics["depth"], stamp_ns, fr.depth_mm, cam_frame)
            bag.camera_info(topics["depth_info"], stamp_ns, seq.camera, cam_frame)
        meta_frames.append({
            "index": i, "stamp": float(traj.stamps[i]), "stamp_ns": stamp_ns,
            "rgb": f"rgb/{i:06d}.png", "depth": f"depth/{i:06d}.png", "mask": f"mask/{i:06d}.png",
            "joint_positions": _floats(seq.joint_positions[i]),
            "hand_base_pose_cam": pose_json(seq.hand2camera[i]),
        })
        contacts = seq.frame_contacts(i)
        gt_frames.append({
            "index": i, "stamp": float(traj.stamps[i]), "stamp_ns": stamp_ns,
            "object_pose_cam": pose_json(traj.object2camera[i]),
            "visible_fraction": float(fr.visible_fraction),
            "max_penetration": float(seq.penetration[i]),
            "contacts": [{
                "link": link,
                "pos_cam": _floats(contacts.pos_cam[j].numpy()),
                "pos_obj": _floats(contacts.pos_obj[j].numpy()),
                "normal_cam_hand_to_obj": _floats(contacts.normal_cam[j].numpy()),
                "normal_force": 0.0,
                "penetration": float(contacts.penetration[j]),
            } for j, link in enumerate(contacts.links)],
        })
        elapsed = time.perf_counter() - t_start
        say(f"[synthetic] frame {i + 1}/{N} ({elapsed / (i + 1):.2f} s/frame)")
    if bag is not None:
        bag.close()

    K = seq.camera.K.double().numpy()
    meta = {
        "sequence": s.name,
        "generator": "handypriors_core.synthetic",
        "seed": s.seed,
        "fps": s.fps,
        "width": s.camera.width,
        "height": s.camera.height,
        "camera": {"K": _floats(K), "D": [0.0] * 5, "distortion_model": "plumb_bob", "frame_id": cam_frame},
        "depth": {"unit": "millimetre", "scale_to_m": 0.001, "invalid": 0},
        "mask": {"values": {"0": "background", "1": "hand", "2": "object"}},
        "hand": {"joint_names": list(seq.joint_names), "root_frame": HAND_ROOT_FRAME,
                 "base_moving": bool(traj.base_moving), "urdf": "urdf/allegro_hand_right.urdf"},
        "object": {"mesh": str(obj_path.relative_to(out)), "name": seq.object_mesh.name,
                   "mass_kg": s.object.mass_kg},
        "frames": meta_frames,
    }
    if bag is not None:
        meta["hand"]["bag_joint_scheme"] = s.bag.joint_scheme
        meta["hand"]["bag_joint_names"] = driver_names
        meta["bag"] = {"path": "bag", "topics": topics, "joint_rate_factor": k}
    gt = {
        "sequence": s.name,
        "object": {"mesh": str(obj_path.relative_to(out)), "symmetry": seq.object_mesh.symmetry},
        "frames": gt_frames,
        "summary": _summary(seq, visible),
    }
    if s.faults.enabled:
        gt["faults"] = seq.faults.to_json(seq.joint_names)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "gt.json").write_text(json.dumps(gt, indent=1) + "\n")
    _imwrite(out / "overlay.png", np.ascontiguousarray(_overlay(seq, [keep[i] for i in overlay_frames])[..., ::-1]))
    say(f"[synthetic] wrote {out}")
    return out
