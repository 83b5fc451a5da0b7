"""Rewrite recorded bags (default: the shared dev bags) with the lab fault model: joint-encoder bias and
hand-camera error (``handypriors_core.synthetic.faults``, the generator's model). The sources are only read.

    .venv/bin/python bench/inject_faults.py --out out/faulty_dev [--scale 2] [--seed 0] [BAG ...]

Writes ``OUT/<sequence>/bag`` (rosbag2) and ``OUT/<sequence>/faults.json`` (the injected faults: ground truth for
scoring ``handypriors calibrate`` and the tracker, never an input).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handypriors_core.models import URDFHand, allegro_urdf  # after the sys.path line above
from handypriors_core.synthetic.fault_bags import inject_faults_into_bag, write_fault_record
from handypriors_core.synthetic.faults import FaultSettings, sample_faults


def shared_dev_bags() -> list[Path]:
    shared = Path(os.environ.get("HANDYPRIORS_SHARED_DIR", ROOT.parent / "shared")) / "data" / "dev"
    return sorted(p / "bag" for p in shared.iterdir() if (p / "bag").is_dir()) if shared.is_dir() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bags", nargs="*", help="bag folders (default: the shared dev bags)")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per sequence)")
    parser.add_argument("--scale", type=float, default=1.0, help="fault magnitude factor (2: the '2x' rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hand-frame", default="hand_root")
    args = parser.parse_args(argv)
    bags = [Path(b) for b in args.bags] or shared_dev_bags()
    if not bags:
        print("no bags given and no shared dev bags found", file=sys.stderr)
        return 2
    joint_names = URDFHand.from_urdf(allegro_urdf()).joint_names
    for k, bag in enumerate(bags):
        name = bag.parent.name if bag.name == "bag" else bag.stem
        faults = sample_faults(FaultSettings(enabled=True, scale=args.scale), len(joint_names), seed=args.seed + k)
        target = Path(args.out) / name
        counts = inject_faults_into_bag(bag, target / "bag", faults, joint_names, args.hand_frame)
        write_fault_record(target / "faults.json", faults, joint_names, str(bag), args.scale, args.seed + k)
        print(f"{name}: {counts} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
