"""Scoring a tracked trajectory (``poses.json``) against ground truth (``gt.json`` of a sequence folder).

``handypriors eval --poses poses.json --gt SEQUENCE`` runs :func:`evaluate` and prints :func:`format_table`;
``--out`` writes :meth:`EvalResult.to_dict` as JSON and ``--plots DIR`` writes :func:`write_plots` (PNG).

Per frame (``poses[i].frame`` indexes the ground-truth frames; frames without an estimate count as failures,
i.e. infinite error, in every AUC and ``frames_over``):

- ``translation``: ``|t_pred - t_gt|`` [m]; ``rotation``: geodesic angle [rad] (reported in degrees);
- ``add``: ADD [m]; ``add_s``: ADD-S [m]; ``add_or_add_s``: ADD-S for symmetric objects, else ADD;
- ``chamfer_3d`` [m], ``chamfer_2d_px`` [px] and ``chamfer_2d`` [m at the object's depth] (the paper's 3D and
  2D object errors; the 2D ones need the camera, read from the sequence's ``meta.json``).

AUCs are the normalised area under the accuracy curve up to 10 cm (in [0, 1]; tables print percent).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import InvalidValueError
from .geometry.camera import PinholeCamera
from .geometry.rotations import axis_angle_to_matrix
from .io.dev_sequence import GroundTruth
from .io.poses_file import PosesFile
from .metrics import add, add_s, object_chamfer_errors, rotation_error, summarize_errors, translation_error
from .models.rigid_object import RigidObject

__all__ = [
    "METRICS",
    "EvalResult",
    "evaluate",
    "format_table",
    "is_symmetric",
    "load_eval_inputs",
    "perturbed_pose",
    "write_json",
    "write_plots",
]

#: Per-frame metrics: key -> (label, unit shown, factor from SI to the shown unit).
METRICS: dict[str, tuple[str, str, float]] = {
    "translation": ("translation error", "cm", 100.0),
    "rotation": ("rotation error", "deg", 180.0 / math.pi),
    "add": ("ADD", "cm", 100.0),
    "add_s": ("ADD-S", "cm", 100.0),
    "add_or_add_s": ("ADD(-S)", "cm", 100.0),
    "chamfer_3d": ("3D Chamfer", "cm", 100.0),
    "chamfer_2d": ("2D Chamfer", "cm", 100.0),
    "chamfer_2d_px": ("2D Chamfer", "px", 1.0),
}
_AUC_METRICS = ("add", "add_s", "add_or_add_s")


def is_symmetric(symmetry: str) -> bool:
    """Whether a ground-truth ``object.symmetry`` text declares a symmetric object.

    "" / "none" / "asymmetric" = no; a geometric symmetry that the texture breaks ("geometry: box (D2h);
    texture breaks symmetry") = no as well: the object's appearance tells the poses apart, so ADD applies.
    """
    text = (symmetry or "").strip().lower()
    if not text or text.startswith(("none", "no ", "no_", "asymmetric")):
        return False
    return "breaks" not in text and "broken" not in text


def perturbed_pose(pose: torch.Tensor, seed: int = 0, translation: float = 0.02, angle_deg: float = 10.0
                   ) -> torch.Tensor:
    """The evaluation protocol's initial pose: ``pose (4, 4)`` moved by ``translation`` [m] and rotated by
    ``angle_deg`` about its origin, both in random directions drawn from ``seed`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.randn(3, generator=g, dtype=torch.float64)
    axis = torch.randn(3, generator=g, dtype=torch.float64)
    out = pose.clone().double()
    out[:3, :3] = axis_angle_to_matrix(axis / axis.norm() * math.radians(angle_deg)) @ out[:3, :3]
    out[:3, 3] += dt / dt.norm() * translation
    return out


@dataclass
class EvalResult:
    """Per-frame errors and their summary.

    Attributes:
        frames: ``(N,)`` int64 ground-truth frame indices scored (all of them unless ``only_estimated``).
        errors: metric -> ``(N,)`` float64 in SI units (metres / radians / px), NaN where no estimate exists.
        estimated: ``(N,)`` bool, whether the poses file has the frame.
        statuses: N tracker statuses ("" where no estimate).
        summary: metric -> {median, mean, auc, frames_over, num_frames} (SI units; failures counted).
        symmetric: whether ADD(-S) used ADD-S. max_threshold: AUC range [m].
        info: inputs (paths, mesh, counts).
    """

    frames: torch.Tensor
    errors: dict[str, torch.Tensor]
    estimated: torch.Tensor
    statuses: list[str]
    summary: dict[str, dict]
    symmetric: bool
    max_threshold: float = 0.10
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (NaN/inf become null)."""

        def clean(v):
            if isinstance(v, float):
                return v if math.isfinite(v) else None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean({
            "info": self.info,
            "symmetric": self.symmetric,
            "max_threshold_m": self.max_threshold,
            "units": {"translation": "m", "rotation": "rad", "add": "m", "add_s": "m", "add_or_add_s": "m",
                      "chamfer_3d": "m", "chamfer_2d": "m", "chamfer_2d_px": "px"},
            "summary": self.summary,
            "frames": {
                "index": [int(i) for i in self.frames],
                "estimated": [bool(b) for b in self.estimated],
                "status": list(self.statuses),
                **{k: [float(x) for x in v] for k, v in self.errors.items()},
            },
        })


def evaluate(poses: PosesFile, gt: GroundTruth, points_obj: torch.Tensor, camera: PinholeCamera | None = None,
             symmetric: bool | None = None, max_threshold: float = 0.10, fail_threshold: float = 0.05,
             only_estimated: bool = False) -> EvalResult:
    """Score ``poses`` against ``gt`` on the object points ``points_obj (P, 3)`` [m, object frame].

    ``camera`` enables the 2D Chamfer errors; ``symmetric`` None reads ``gt.symmetry``; ``only_estimated``
    scores only the ground-truth frames the poses file has (e.g. after ``track --max-frames``) instead of
    counting the others as failures. Raises InvalidValueError when the poses name frames that the ground truth
    does not have.
    """
    n_all = len(gt)
    bad = [p.frame for p in poses.poses if not 0 <= p.frame < n_all]
    if bad:
        raise InvalidValueError(f"poses name frame(s) {bad[:5]} but the ground truth has frames 0..{n_all - 1}")
    gt_index = poses.frames() if only_estimated else torch.arange(n_all)
    if only_estimated and not len(gt_index):
        raise InvalidValueError("the poses file holds no pose to evaluate")
    position = {int(f): k for k, f in enumerate(gt_index)}
    n = len(gt_index)
    frames = torch.tensor([position[p.frame] for p in poses.poses], dtype=torch.int64)
    symmetric = is_symmetric(gt.symmetry) if symmetric is None else bool(symmetric)
    pts = points_obj.to(torch.float64)
    gt_all = gt.object2camera.to(torch.float64)[gt_index]
    estimated = torch.zeros(n, dtype=torch.bool)
    estimated[frames] = True
    statuses = [""] * n
    for k, p in zip(frames.tolist(), poses.poses):
        statuses[k] = p.status
    errors = {k: torch.full((n,), math.nan, dtype=torch.float64) for k in METRICS}
    if len(frames):
        pred = poses.object2camera(torch.float64)
        g = gt_all[frames]
        errors["translation"][frames] = translation_error(pred, g)
        errors["rotation"][frames] = rotation_error(pred, g)
        errors["add"][frames] = add(pts, pred, g)
        errors["add_s"][frames] = add_s(pts, pred, g)
        errors["add_or_add_s"][frames] = errors["add_s" if symmetric else "add"][frames]
        cam = camera.to(None, torch.float64) if camera is not None else None
        if cam is not None:
            ch = object_chamfer_errors(pts, pred, g, cam)
            errors["chamfer_3d"][frames] = ch.chamfer_3d
            errors["chamfer_2d_px"][frames] = ch.chamfer_2d_px
            errors["chamfer_2d"][frames] = ch.chamfer_2d_m
        else:
            from .geometry.transforms import transform_points
            from .metrics import chamfer_3d

            errors["chamfer_3d"][frames] = chamfer_3d(transform_points(pred, pts), transform_points(g, pts))
    summary = {}
    for key, values in errors.items():
        if key.startswith("chamfer_2d") and camera is None:
            continue
        # missing frames are failures: NaN -> inf in the summaries
        e = torch.where(estimated, values, torch.full_like(values, math.inf))
        s = summarize_errors(e, max_threshold, fail_threshold if key != "rotation" else math.radians(10))
        if key not in _AUC_METRICS:
            s.pop("auc", None)
        summary[key] = s
    info = {"num_gt_frames": n_all, "num_scored": n, "num_estimated": int(estimated.sum()),
            "num_missing": int(n - estimated.sum()), "num_lost": sum(1 for s in statuses if s == "lost"),
            "num_points": int(pts.shape[0]), "fail_threshold_m": fail_threshold, "only_estimated": only_estimated}
    return EvalResult(gt_index.clone(), errors, estimated, statuses, summary, symmetric, max_threshold, info)


def load_eval_inputs(poses_path: str | os.PathLike, gt_path: str | os.PathLike,
                     object_mesh: str | os.PathLike | None = None, mesh_scale: float = 1.0,
                     num_points: int = 1000):
    """Read what :func:`evaluate` needs: ``(poses, gt, points_obj, camera or None, mesh path)``.

    ``gt_path``: a sequence folder or its ``gt.json``. The mesh: ``object_mesh`` if given, else the sequence's
    ``meta.json`` ``object.mesh``, else ``poses.object_mesh`` (relative to the poses file, then the cwd). The
    camera comes from the sequence's ``meta.json`` when there is one.
    """
    import json as _json

    from .io.dev_sequence import load_ground_truth
    from .io.poses_file import read_poses

    poses = read_poses(poses_path)
    gt = load_ground_truth(gt_path)
    gt_path = Path(gt_path)
    folder = gt_path if gt_path.is_dir() else gt_path.parent
    meta_path = folder / "meta.json"
    meta = None
    if meta_path.is_file():
        try:
            meta = _json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidValueError(f"{meta_path} is not valid JSON: {exc}") from None
    mesh = None
    if object_mesh is not None:
        mesh = Path(object_mesh)
    elif isinstance(meta, dict) and isinstance(meta.get("object"), dict) and meta["object"].get("mesh"):
        mesh = folder / str(meta["object"]["mesh"])
    elif poses.object_mesh:
        candidate = Path(poses.object_mesh)
        rel = Path(poses_path).parent / candidate
        mesh = candidate if candidate.is_absolute() or not rel.is_file() else rel
    if mesh is None:
        raise InvalidValueError("no object mesh: pass --object-mesh (the poses file and the ground truth name none)")
    obj = RigidObject.from_mesh(mesh, scale=mesh_scale, n_samples=num_points)
    camera = None
    if meta is not None:
        from .io.dev_sequence import DevSequence

        camera = DevSequence(folder).camera
    return poses, gt, obj.samples.to(torch.float64), camera, mesh


# ------------------------------------------------------------------------------------------------- output
def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def format_table(result: EvalResult, title: str = "") -> str:
    """A plain-text table: median / mean per metric, AUCs (percent) and failure counts."""
    lines = []
    if title:
        lines.append(title)
    info = result.info
    scored = "" if info["num_scored"] == info["num_gt_frames"] else f" ({info['num_scored']} scored)"
    lines.append(f"frames: {info['num_gt_frames']} ground truth{scored}, {info['num_estimated']} estimated, "
                 f"{info['num_missing']} missing, {info['num_lost']} lost; ADD(-S) uses "
                 f"{'ADD-S (symmetric object)' if result.symmetric else 'ADD'}")
    header = f"{'metric':<20} {'unit':>4} {'median':>9} {'mean':>9} {'AUC@10cm':>9} {'over':>6}"
    lines.append(header)
    lines.append("-" * len(header))
    for key, (label, unit, factor) in METRICS.items():
        if key not in result.summary:
            continue
        s = result.summary[key]
        auc = _fmt(100.0 * s["auc"], 1) if "auc" in s else ""
        over = "" if key == "chamfer_2d_px" else str(s["frames_over"])
        lines.append(f"{label:<20} {unit:>4} {_fmt(s['median'] * factor):>9} {_fmt(s['mean'] * factor):>9} "
                     f"{auc:>9} {over:>6}")
    lines.append(f"median and AUC count missing frames as failures, mean is over estimated frames; 'over': frames "
                 f"above {100 * info['fail_threshold_m']:.0f} cm (10 deg for rotation) or missing")
    return "\n".join(lines)


def write_json(result: EvalResult, path: str | os.PathLike) -> None:
    """Write :meth:`EvalResult.to_dict` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n")


def write_plots(result: EvalResult, folder: str | os.PathLike, title: str = "") -> list[Path]:
    """PNG plots (matplotlib, Agg): errors over time and the ADD-S / ADD(-S) accuracy curves. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = result.frames.numpy()
    paths = []

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for ax, key in zip(axes, ("translation", "rotation", "add_s")):
        label, unit, factor = METRICS[key]
        ax.plot(frames, result.errors[key].numpy() * factor, ".-", lw=1, ms=3)
        ax.set_ylabel(f"{label} [{unit}]")
        ax.grid(alpha=0.3)
        missing = frames[~result.estimated.numpy()]
        if len(missing):
            ax.plot(missing, [0] * len(missing), "rx", ms=4, label="no estimate")
            ax.legend(loc="upper left")
    lost = [i for i, s in enumerate(result.statuses) if s == "lost"]
    for ax in axes:
        for i in lost:
            ax.axvspan(i - 0.5, i + 0.5, color="red", alpha=0.1, lw=0)
    axes[-1].set_xlabel("frame")
    fig.suptitle(title or "error over time (red: lost)")
    fig.tight_layout()
    path = folder / "error_over_time.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    thresholds = torch.linspace(0.0, result.max_threshold, 201, dtype=torch.float64)
    for key in ("add_s", "add"):
        e = torch.where(result.estimated, result.errors[key], torch.full_like(result.errors[key], math.inf))
        acc = (e[None, :] <= thresholds[:, None]).double().mean(-1)
        s = result.summary[key]
        ax.plot(thresholds.numpy() * 100, acc.numpy() * 100, label=f"{METRICS[key][0]} (AUC {100 * s['auc']:.1f})")
    ax.set_xlabel("threshold [cm]")
    ax.set_ylabel("frames within threshold [%]")
    ax.set_xlim(0, result.max_threshold * 100)
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "accuracy curve")
    fig.tight_layout()
    path = folder / "add_s_accuracy.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths
