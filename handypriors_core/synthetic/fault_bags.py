"""Rewrite a recorded rosbag2 with the lab fault model of :mod:`.faults` (the generator's, applied afterwards).

Joint states get the per-joint encoder bias (``position += bias`` of the joint's URDF name, through the joint map
detected from the names); the transform that ends at the hand root frame (``/tf`` and ``/tf_static``) is
right-multiplied by the hand-camera error, so ``hand2camera_measured = hand2camera_true @ error`` whatever the
parent frame. Images, camera info and every other message are copied byte for byte. The source is only read.

    python bench/inject_faults.py --out out/faulty_dev [--scale 2] [--seed 0] [BAG ...]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import InvalidValueError
from ..geometry.rotations import matrix_to_quaternion, quaternion_to_matrix
from .faults import SensorFaults

__all__ = ["inject_faults_into_bag", "write_fault_record"]

JOINT_STATE = "sensor_msgs/msg/JointState"
TF = "tf2_msgs/msg/TFMessage"


def _faulty_transform(msg_tf, error: np.ndarray) -> None:
    """``geometry_msgs/Transform`` ``child2parent`` -> ``child2parent @ error`` (in place)."""
    import torch

    tr, rot = msg_tf.translation, msg_tf.rotation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(torch.tensor([rot.x, rot.y, rot.z, rot.w], dtype=torch.float64)).numpy()
    T[:3, 3] = (tr.x, tr.y, tr.z)
    T = T @ error
    q = matrix_to_quaternion(torch.as_tensor(T[:3, :3])).tolist()
    tr.x, tr.y, tr.z = (float(v) for v in T[:3, 3])
    rot.x, rot.y, rot.z, rot.w = (float(v) for v in q)


def inject_faults_into_bag(src: str | os.PathLike, out: str | os.PathLike, faults: SensorFaults,
                           joint_names: list[str] | tuple[str, ...], hand_frame: str = "hand_root") -> dict:
    """Copy the bag ``src`` to the new bag folder ``out`` with ``faults`` applied (see the module docstring).

    Args:
        joint_names: the hand model's joint names (``faults.joint_bias`` order).
        hand_frame: TF frame of the hand root.
    Returns a summary: messages copied, joint-state messages and transforms changed, the joint map used.
    """
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from ..io.bag_files import open_bag
    from ..models.joint_maps import JointMap

    out = Path(out)
    if out.exists():
        raise InvalidValueError(f"output bag {out} already exists (never overwritten)")
    if len(faults.joint_bias) != len(joint_names):
        raise InvalidValueError(f"faults have {len(faults.joint_bias)} joint biases for {len(joint_names)} joints")
    store = get_typestore(Stores.ROS2_HUMBLE)
    bias_of = dict(zip(joint_names, faults.joint_bias.tolist(), strict=True))
    hand_frame = hand_frame.lstrip("/")
    counts = {"messages": 0, "joint_states": 0, "hand_transforms": 0}
    driver_bias: dict[tuple[str, ...], np.ndarray] = {}
    joint_map = None
    reader = open_bag(src)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = Writer(out, version=8)
        writer.open()
        try:
            conns = {}
            for c in reader.connections:
                qos = getattr(c.ext, "offered_qos_profiles", [])
                conns[c.id] = writer.add_connection(c.topic, c.msgtype, typestore=store,
                                                    serialization_format=c.ext.serialization_format,
                                                    offered_qos_profiles=qos)
            for conn, t_ns, raw in reader.messages():
                counts["messages"] += 1
                if conn.msgtype == JOINT_STATE:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                    names = tuple(msg.name)
                    if names not in driver_bias:
                        joint_map = JointMap.best_match(names, joint_names)
                        # q_urdf = sign * q_driver + offset: a URDF-angle bias is bias / sign on the driver's value
                        driver_bias[names] = np.array([bias_of.get(joint_map.urdf_name(n), 0.0) / joint_map.sign[n]
                                                       if n in joint_map.mapping else 0.0 for n in names])
                    if len(msg.position) == len(names):
                        msg.position = np.asarray(msg.position, np.float64) + driver_bias[names]
                        counts["joint_states"] += 1
                    raw = store.serialize_cdr(msg, conn.msgtype)
                elif conn.msgtype == TF:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                    changed = 0
                    for item in msg.transforms:
                        if item.child_frame_id.lstrip("/") == hand_frame:
                            _faulty_transform(item.transform, faults.hand_camera_error)
                            changed += 1
                    if changed:
                        counts["hand_transforms"] += changed
                        raw = store.serialize_cdr(msg, conn.msgtype)
                writer.write(conns[conn.id], t_ns, raw)
        finally:
            writer.close()
    finally:
        reader.close()
    if counts["joint_states"] == 0 or counts["hand_transforms"] == 0:
        raise InvalidValueError(f"{src}: {counts['joint_states']} joint-state messages and "
                                f"{counts['hand_transforms']} transforms to {hand_frame!r} changed: not a hand bag?")
    counts["joint_map"] = getattr(joint_map, "name", "") if joint_map is not None else ""
    return counts


def write_fault_record(path: str | os.PathLike, faults: SensorFaults, joint_names, source: str, scale: float,
                       seed: int) -> Path:
    """The ground truth of the injected faults as JSON beside the rewritten bag."""
    record = {"source": str(source), "scale": scale, "seed": seed, **faults.to_json(list(joint_names))}
    path = Path(path)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path
