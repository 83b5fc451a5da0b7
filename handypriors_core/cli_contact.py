"""``handypriors refine-contact``: contact refinement (paper Sec. IV-D) from the command line.

Register it in the ``handypriors`` command with ``cli_contact.add_parser(subparsers)``; the parser's default
``func`` is :func:`run` (``args.func(args)`` returns the exit status).

Inputs:

- the hand: ``--mano-model MANO_RIGHT.pkl`` (official files are obtained by users; never shipped),
  ``--synthetic-model right|left`` (the project's MANO-format test model) or ``--urdf PATH|allegro`` (a URDF hand
  over its joint angles, e.g. the shipped Allegro hand);
- ``--object MESH`` (``.obj``/``.ply``/``.stl``, metres or ``--object-scale``);
- ``--target FILE``: the target contact map, ``.npy`` ``(V,)`` or ``(V, 4)`` (value + object-frame normal) or
  ``.json`` ``{"contact": [...], "normals": [...]}`` (see ``contact_refinement.load_contact_target``);
- ``--init FILE``: the initial hand as JSON in the object's parent frame: MANO ``{"global_orient": [3],
  "hand_pose": [J], "transl": [3], "betas": [S] (optional)}``; URDF ``{"joint_angles": {name: rad} or [J],
  "hand2object": 4x4 rows}``; either may add ``"object2world": 4x4 rows`` (default identity).

Outputs in ``--output-dir``: ``refined_params.json`` (the refined hand in the format of ``--init``, plus
``object2world`` and a ``report`` with the contact agreement before and after), ``contact_map.npy`` (the
refined contact values ``(V,)``, float64) and ``contact.png`` (the hand coloured by contact value, blue 0 to red
1: seen from the object, and from the side with the object in grey).

Exit status 0 on success; typed errors of :mod:`handypriors_core.errors` are printed as ``error: ...`` with
status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .errors import HandyPriorsError, ModelFileError, ShapeError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``refine-contact`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "refine-contact",
        help="refine a hand pose towards a target contact map (paper Sec. IV-D)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    hand = p.add_mutually_exclusive_group(required=True)
    hand.add_argument("--mano-model", type=Path, help="MANO model pickle (MANO_RIGHT.pkl / MANO_LEFT.pkl)")
    hand.add_argument("--synthetic-model", choices=("right", "left"), help="use the synthetic MANO-format model")
    hand.add_argument("--urdf", help="URDF hand file, or 'allegro' for the shipped Allegro hand")
    p.add_argument("--num-pca-comps", type=int, default=0, help="MANO: hand_pose as this many PCA coefficients")
    p.add_argument("--flat-hand-mean", action="store_true", help="MANO: zero hand_pose is the flat hand")
    p.add_argument("--object", type=Path, required=True, help="object mesh (.obj, .ply, .stl)")
    p.add_argument("--object-scale", type=float, default=1.0, help="mesh units to metres (e.g. 0.001 for mm)")
    p.add_argument("--target", type=Path, required=True, help="target contact map (.npy or .json)")
    p.add_argument("--init", type=Path, required=True, help="initial hand parameters (JSON)")
    p.add_argument("--output-dir", type=Path, required=True, help="where the results are written")
    p.add_argument("--iterations", type=int, default=None, help="Adam steps (default: the settings')")
    p.add_argument("--optimize-object", action="store_true", help="also optimise the object pose")
    p.add_argument("--fixed-hand-pose", action="store_true", help="keep the hand's global pose (rigid part) fixed")
    p.add_argument("--image-size", type=int, default=256, help="edge of each view of contact.png [px]")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.set_defaults(func=run)
    return p


def _matrix(value, name: str, source: Path) -> torch.Tensor:
    try:
        T = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: {name} is not a 4x4 list of numbers ({exc})") from None
    if T.shape != (4, 4):
        raise ShapeError(f"{source}: {name} must be 4x4; got {tuple(T.shape)}")
    return T


def _load_hand(args, device: torch.device):
    from .models import URDFHand, allegro_urdf
    from .models.mano import ManoHand

    pca = {"use_pca": args.num_pca_comps > 0, "num_pca_comps": max(args.num_pca_comps, 1),
           "flat_hand_mean": args.flat_hand_mean, "device": device}
    if args.mano_model is not None:
        return ManoHand.from_file(args.mano_model, **pca)
    if args.synthetic_model is not None:
        from .synthetic.mano_test_model import build_synthetic_mano

        return ManoHand(build_synthetic_mano(args.synthetic_model), source=f"synthetic-{args.synthetic_model}",
                        side=args.synthetic_model, **pca)
    path = allegro_urdf() if args.urdf == "allegro" else Path(args.urdf)
    if not Path(path).is_file():
        raise ModelFileError(f"URDF file not found: {path}")
    return URDFHand.from_urdf(path, device=device)


def _load_init(path: Path, hand, is_mano: bool):
    from .estimation.hand_object import mano_params_from_dicts
    from .io.json_file import read_json

    data = read_json(path, "initial hand")
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    object2world = _matrix(data["object2world"], "object2world", path) if "object2world" in data else None
    if is_mano:
        return mano_params_from_dicts([data], hand, str(path)), object2world
    if "joint_angles" not in data or "hand2object" not in data:
        raise ModelFileError(f"{path}: a URDF hand needs 'joint_angles' and 'hand2object'")
    q = hand.default_joint_angles().detach().clone().double().cpu()
    angles = data["joint_angles"]
    if isinstance(angles, dict):
        for name, value in angles.items():
            q[hand.joint_index(name)] = float(value)
    else:
        arr = np.asarray(angles, dtype=np.float64).reshape(-1)
        if arr.shape != (hand.num_joints,):
            raise ShapeError(f"{path}: joint_angles has {arr.size} values; the hand has {hand.num_joints} joints")
        q = torch.as_tensor(arr)
    return (q, _matrix(data["hand2object"], "hand2object", path)), object2world


def run(args: argparse.Namespace) -> int:
    """Run ``refine-contact`` with parsed ``args``; returns the exit status."""
    try:
        return _run(args)
    except HandyPriorsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import cv2

    from .estimation.contact_refinement import (
        ContactRefiner,
        ContactRefineSettings,
        load_contact_target,
        render_contact_image,
    )
    from .estimation.hand_object import save_mano_params
    from .models.mano import ManoHand
    from .models.rigid_object import RigidObject

    device = torch.device(args.device)
    hand = _load_hand(args, device)
    is_mano = isinstance(hand, ManoHand)
    obj = RigidObject.from_mesh(args.object, scale=args.object_scale, device=device)
    settings = ContactRefineSettings(optimize_object=args.optimize_object,
                                     optimize_hand_global=not args.fixed_hand_pose)
    refiner = ContactRefiner(hand, obj, settings)
    target, normals = load_contact_target(args.target, refiner.num_vertices)
    init, object2world = _load_init(args.init, hand, is_mano)
    if not is_mano:
        init = (init[0].to(device, hand.dtype), init[1].to(device, hand.dtype))
    result = refiner.refine(target.to(device, hand.dtype), init,
                            None if normals is None else normals.to(device, hand.dtype),
                            None if object2world is None else object2world.to(device, hand.dtype),
                            iterations=args.iterations)

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"initial_agreement": result.initial_agreement, "agreement": result.agreement,
              "loss": result.loss, "initial_loss": result.initial_loss, "iterations": result.iterations,
              "seconds": round(result.elapsed, 3)}
    extra = {"object2world": result.object2world.double().cpu().tolist(), "report": report}
    params_path = out / "refined_params.json"
    if is_mano:
        save_mano_params(params_path, result.params, hand, extra=extra)
    else:
        entry = {"joint_angles": {n: float(v) for n, v in zip(hand.joint_names, result.joint_angles.cpu())},
                 "hand2object": result.hand2object.double().cpu().tolist(), **extra}
        params_path.write_text(json.dumps(entry, indent=1) + "\n")
    np.save(out / "contact_map.npy", result.contact_map.double().cpu().numpy())
    from .geometry.transforms import transform_points

    obj_world = transform_points(result.object2world[None], obj.verts[None])[0]
    image = render_contact_image(result.vertices, refiner.faces, result.contact_map, obj_world, obj.faces,
                                 size=args.image_size)
    cv2.imwrite(str(out / "contact.png"), np.ascontiguousarray(image[..., ::-1]))
    a0, a1 = result.initial_agreement, result.agreement
    print(f"refine-contact: {result.iterations} iterations in {result.elapsed:.1f} s; contact map "
          f"MAE {a0['mae']:.4f} -> {a1['mae']:.4f}, IoU {a0['iou']:.3f} -> {a1['iou']:.3f}; wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m handypriors_core.cli_contact ...``)."""
    parser = argparse.ArgumentParser(prog="handypriors")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
