"""``handypriors eval``: score a poses file against ground truth (table on stdout, optional JSON and plots)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EvaluateOptions", "run_evaluate"]


@dataclass
class EvaluateOptions:
    """Everything ``handypriors eval`` needs (see ``docs/cli.md``).

    Attributes:
        poses: poses.json written by ``handypriors track``. gt: sequence folder or its ``gt.json``.
        object_mesh: None = the sequence's mesh, else the poses file's; mesh_scale: its unit.
        symmetric: True / False = ADD(-S) uses ADD-S / ADD; None = gt.json's symmetry.
        only_estimated: score only the frames in the poses file (missing frames otherwise count as failures).
        out: results as JSON (None: not written). plots: folder for PNG plots (None: none).
    """

    poses: Path
    gt: Path
    object_mesh: Path | None = None
    mesh_scale: float = 1.0
    symmetric: bool | None = None
    only_estimated: bool = False
    out: Path | None = None
    plots: Path | None = None


def run_evaluate(opts: EvaluateOptions) -> None:
    """Score ``opts.poses``, print the table and what was written (stdout)."""
    from .. import evaluation

    poses, gt, points, camera, mesh = evaluation.load_eval_inputs(opts.poses, opts.gt, opts.object_mesh,
                                                                  opts.mesh_scale)
    result = evaluation.evaluate(poses, gt, points, camera, symmetric=opts.symmetric,
                                 only_estimated=opts.only_estimated)
    result.info.update({"poses": str(opts.poses), "gt": str(opts.gt), "object_mesh": str(mesh)})
    print(evaluation.format_table(result, title=f"{opts.poses} vs {opts.gt}"))
    if opts.out:
        evaluation.write_json(result, opts.out)
        print(f"wrote {opts.out}")
    if opts.plots:
        for path in evaluation.write_plots(result, opts.plots, title=Path(opts.poses).name):
            print(f"wrote {path}")
