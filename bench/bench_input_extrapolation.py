"""What ``input_extrapolation`` changes in a frame's inputs, on the shared dev bags (no ROS graph, no timing).

The node (``handypriors_ros/frame_sync.py``) interpolates joint states and the wrist's TF at each image stamp; with
``input_extrapolation`` > 0 (shipped config: 10 ms) a stream whose newest sample lies at most that far before the
stamp is extrapolated at constant velocity instead of waited for. Here every image stamp of each dev bag is taken
in the worst case for it: the image arrives at its stamp, so the newest sample is the last one before the stamp.
For each, the extrapolated joint angles and wrist pose (the node's own code: ``FrameAssembler``'s rule,
``frame_sync.extrapolate_pose``) are compared with the interpolation between the samples around the stamp (what
the node used when it waited), and so is holding the newest sample (the old fallback past ``sync_timeout``).

Reported per bag: how far the stamps lie past the newest sample [ms], and the differences to the interpolation:
joints [rad] (largest over the joints), wrist translation [mm] and rotation [deg] (median, max over the frames).
``checks``: the extrapolation's largest differences within bounds, and below holding's (exit 1 otherwise).

    .venv/bin/python bench/bench_input_extrapolation.py [--horizon 0.01]

Writes ``bench/results/input_extrapolation.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import write_results  # after the sys.path line above

#: Bounds of the extrapolation's largest difference to the interpolation over a dev bag, about 1.5x the measured
#: maxima (session 7: joints 0.0055 rad on block_lift_wrist, 0.0090 rad on mug_pivot_fixed; wrist 0.044 mm /
#: 0.039 deg on block_lift_wrist; holding the newest sample instead: 0.027-0.029 rad, 0.49 mm / 0.44 deg).
BOUNDS = {"joints_rad": 0.014, "translation_mm": 0.07, "rotation_deg": 0.06}


def _read(bag: Path) -> dict:
    from rosbags.rosbag2 import Reader

    from handypriors_ros import cdr
    from handypriors_ros.conversions import stamp_ns

    images, joints, wrist, static = [], [], [], False
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            data = bytes(raw)
            if connection.msgtype == "sensor_msgs/msg/Image" and "depth" not in connection.topic:
                images.append(stamp_ns(cdr.parse_image(data)))
            elif connection.msgtype == "sensor_msgs/msg/JointState":
                msg = cdr.parse_joint_state(data)
                joints.append((stamp_ns(msg), np.asarray(msg.position, dtype=np.float64)))
            elif connection.msgtype == "tf2_msgs/msg/TFMessage":
                for t in cdr.parse_tf_message(data).transforms:
                    if t.child_frame_id == "hand_root":
                        static = static or connection.topic == "/tf_static"
                        wrist.append((stamp_ns(t), t))
    return {"images": sorted(images), "joints": sorted(joints, key=lambda s: s[0]),
            "wrist": [] if static else sorted(wrist, key=lambda s: s[0])}


def _stats(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "max": float(np.max(values))} if values else {}


def _rotation_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = (float(torch.trace(a[:3, :3].T @ b[:3, :3])) - 1.0) / 2.0
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def measure(bag: Path, horizon_s: float) -> dict:
    from handypriors_core.io.transform_buffer import TransformBuffer
    from handypriors_ros import conversions as cv
    from handypriors_ros.frame_sync import extrapolate_pose

    streams = _read(bag)
    horizon = round(horizon_s * 1e9)
    stamps = np.array([s for s, _ in streams["joints"]], dtype=np.int64)
    values = np.stack([v for _, v in streams["joints"]])

    def joints_at(t: int) -> np.ndarray:
        return np.array([np.interp(t, stamps, values[:, j]) for j in range(values.shape[1])])

    buffer = TransformBuffer()
    for stamp, t in streams["wrist"]:
        buffer.add_transform(t.header.frame_id, "hand_root", stamp, cv.transform_to_matrix(t))
    wrist_stamps = np.array([s for s, _ in streams["wrist"]], dtype=np.int64)
    out = {"past_newest_ms": [], "joints_rad": [], "joints_held_rad": [], "translation_mm": [],
           "translation_held_mm": [], "rotation_deg": [], "rotation_held_deg": []}
    for t in streams["images"]:
        k = int(np.searchsorted(stamps, t)) - 1  # the newest joint state before the stamp
        if 1 <= k < len(stamps) - 1 and 0 < t - stamps[k] <= horizon:
            earlier = max(int(stamps[0]), int(stamps[k]) - horizon)  # (the node's rule, frame_sync._joint_angles)
            q1, q0 = joints_at(int(stamps[k])), joints_at(earlier)
            extrapolated = q1 + (q1 - q0) * ((t - stamps[k]) / (stamps[k] - earlier))
            reference = joints_at(t)
            out["past_newest_ms"].append((t - stamps[k]) / 1e6)
            out["joints_rad"].append(float(np.abs(extrapolated - reference).max()))
            out["joints_held_rad"].append(float(np.abs(q1 - reference).max()))
        k = int(np.searchsorted(wrist_stamps, t)) - 1
        if 1 <= k < len(wrist_stamps) - 1 and 0 < t - wrist_stamps[k] <= horizon:
            newest = int(wrist_stamps[k])
            pose = buffer.lookup("camera_color_optical_frame", "hand_root", newest).double()
            before = buffer.lookup("camera_color_optical_frame", "hand_root", newest - horizon).double()
            extrapolated = extrapolate_pose(before, pose, (t - newest) / horizon)
            reference = buffer.lookup("camera_color_optical_frame", "hand_root", t).double()
            out["translation_mm"].append(1e3 * float((extrapolated[:3, 3] - reference[:3, 3]).norm()))
            out["translation_held_mm"].append(1e3 * float((pose[:3, 3] - reference[:3, 3]).norm()))
            out["rotation_deg"].append(_rotation_deg(extrapolated, reference))
            out["rotation_held_deg"].append(_rotation_deg(pose, reference))
    return {"frames": len(streams["images"]), "wrist": "moving (/tf)" if streams["wrist"] else "fixed (/tf_static)",
            **{key: _stats(v) for key, v in out.items()}}


def checks(results: dict) -> dict:
    out = {}
    for name, bag in results["bags"].items():
        for key, bound in BOUNDS.items():
            if bag.get(key):
                held = bag[key.replace("_rad", "_held_rad").replace("_mm", "_held_mm").replace("_deg", "_held_deg")]
                value = bag[key]["max"]
                out[f"{name}_{key}_max"] = {"value": value, "bound": bound, "held_max": held["max"],
                                            "pass": bool(value <= bound and value <= held["max"])}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=float, default=0.01, help="input_extrapolation [s]")
    args = parser.parse_args(argv if argv is not None or __name__ == "__main__" else [])
    shared = ROOT.parent / "shared" / "data" / "dev"
    bags = sorted(p for p in shared.iterdir() if (p / "bag" / "metadata.yaml").is_file()) if shared.is_dir() else []
    if not bags:
        print(f"no dev bags under {shared}: nothing measured")
        return 0
    results = {"description": __doc__.splitlines()[0], "horizon_s": args.horizon,
               "bags": {p.name: measure(p / "bag", args.horizon) for p in bags}}
    results["checks"] = checks(results)
    for name, bag in results["bags"].items():
        print(f"{name} ({bag['frames']} frames, wrist {bag['wrist']}): past the newest joint state "
              f"{bag['past_newest_ms']} ms; joints extrapolated {bag['joints_rad']} rad "
              f"(held {bag['joints_held_rad']}); "
              f"wrist {bag['translation_mm']} mm / {bag['rotation_deg']} deg (held {bag['translation_held_mm']} mm / "
              f"{bag['rotation_held_deg']} deg)")
    for name, check in results["checks"].items():
        print(f"  {'PASS' if check['pass'] else 'FAIL'} {name}: {check['value']:.4g} (bound {check['bound']}, "
              f"holding {check['held_max']:.4g})")
    print(f"wrote {write_results('input_extrapolation', results)}")
    return 0 if all(c["pass"] for c in results["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
