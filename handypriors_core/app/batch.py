"""``handypriors batch FOLDER --object-mesh MESH --out DIR``: track every bag of a folder, resumably.

Every bag below ``FOLDER`` (rosbag2 folders, ``.mcap`` / ``.db3`` files;
:func:`~handypriors_core.io.bag_files.find_bags`) gets a sub-folder ``DIR/<name>/`` with ``poses.json`` (and
``overlay.mp4`` with ``--video``), ``log.txt`` (what the tracker reported) and, once it finished, ``done.json``
(the run's summary). A bag whose ``done.json`` exists is skipped, so an interrupted batch continues where it
stopped; ``--redo`` runs everything again.

Bags run in a local process pool (``--workers N``, default 1: one worker process, so a crash in one bag cannot
take the batch down) or on a Ray cluster (``--ray ADDRESS``; Ray is imported only then). One failing bag is
reported (``failed.json`` in its folder, one line on the terminal) and the others go on; the exit status is 1
when any bag failed. ``DIR/batch.json`` lists every bag's outcome.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import InvalidValueError
from .batch_ray import run_on_ray
from .track import TrackOptions

__all__ = ["BagOutcome", "BatchOptions", "BatchReport", "bag_name", "run_batch", "track_one"]


@dataclass
class BagOutcome:
    """What happened to one bag: ``status`` is ``done``, ``skipped`` (finished earlier) or ``failed``."""

    bag: str
    name: str
    status: str
    message: str = ""
    seconds: float = 0.0
    frames: int = 0
    fps: float = 0.0


@dataclass
class BatchReport:
    """All outcomes, in bag order."""

    outcomes: list[BagOutcome] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[BagOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def bag_name(bag: Path, root: Path) -> str:
    """Output sub-folder name of ``bag`` below ``root``: its relative path with ``/`` -> ``__``, no suffix."""
    try:
        rel = bag.relative_to(root)
    except ValueError:
        rel = Path(bag.name)
    if str(rel) == ".":
        rel = Path(bag.name)
    parts = list(rel.parts)
    parts[-1] = Path(parts[-1]).stem if Path(parts[-1]).suffix in (".mcap", ".db3") else parts[-1]
    return "__".join(parts)


def track_one(bag: str, out_dir: str, template: TrackOptions, threads: int = 1) -> dict:
    """Track one bag into ``out_dir`` (runs in a worker process) with ``template``'s options (its bag and outputs
    replaced); never raises: returns an outcome dict."""
    from .progress import quiet_warp
    from .track import run_track

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []
    outcome = {"bag": bag, "name": out.name, "status": "failed", "message": "", "seconds": 0.0, "frames": 0,
               "fps": 0.0}
    try:
        import torch

        torch.set_num_threads(max(1, threads))
        quiet_warp()
        partial = out / "poses.json.partial"
        opts = replace(template, bag=Path(bag), out=partial, out_bag=None,
                       video=out / "overlay.mp4" if template.video is not None else None, progress=False,
                       report=log_lines.append)
        summary = run_track(opts)
        if summary.interrupted:
            raise KeyboardInterrupt
        partial.replace(out / "poses.json")
        outcome.update(status="done", frames=summary.num_tracked, fps=round(summary.fps, 3),
                       message=f"{summary.num_tracked}/{summary.num_images} images tracked ({summary.mode})")
    except KeyboardInterrupt:
        outcome.update(status="failed", message="interrupted")
    except BaseException as exc:  # noqa: BLE001 - one failing bag must not stop the batch
        text = " ".join(str(exc).split()) or type(exc).__name__
        outcome["message"] = text if _expected(exc) else f"{type(exc).__name__}: {text}"
        log_lines.append(traceback.format_exc())
    outcome["seconds"] = round(time.perf_counter() - start, 3)
    (out / "log.txt").write_text("\n".join(log_lines) + "\n")
    marker = out / ("done.json" if outcome["status"] == "done" else "failed.json")
    marker.write_text(json.dumps(outcome, indent=1) + "\n")
    if outcome["status"] == "done":
        (out / "failed.json").unlink(missing_ok=True)
    return outcome


def _expected(exc: BaseException) -> bool:
    from ..errors import HandyPriorsError

    return isinstance(exc, HandyPriorsError) or (type(exc).__module__ or "").startswith("rosbags")


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass
class BatchOptions:
    """Everything ``handypriors batch`` needs (see ``docs/cli.md``).

    Attributes:
        folder: searched for bags; object_mesh: the object model; out: one sub-folder per bag.
        workers: local worker processes; ray_address: run on Ray instead ('auto', host:port or 'local':
            :mod:`.batch_ray`; None: the local process pool).
        mode, config, initial_pose, mask_source, max_frames: the :class:`~.track.TrackOptions` of every bag.
        video: also write ``overlay.mp4`` per bag. redo: re-run bags that already finished.
        report: where progress lines go.
    """

    folder: Path
    object_mesh: Path
    out: Path
    workers: int = 1
    ray_address: str | None = None
    mode: str | None = None
    config: Path | None = None
    initial_pose: str | None = None
    mask_source: str | None = None
    max_frames: int | None = None
    video: bool = False
    redo: bool = False
    report: Callable[[str], None] = _say

    def track_options(self) -> TrackOptions:
        """The options every bag is tracked with (bag and outputs are set per bag by :func:`track_one`)."""
        return TrackOptions(bag=Path(), object_mesh=Path(self.object_mesh).resolve(), mode=self.mode,
                            config=None if self.config is None else Path(self.config).resolve(),
                            initial_pose=self.initial_pose, mask_source=self.mask_source,
                            max_frames=self.max_frames, video=Path("overlay.mp4") if self.video else None)


def run_batch(opts: BatchOptions) -> BatchReport:
    """Track every bag below ``opts.folder`` into ``opts.out/<name>/`` (see the module docstring)."""
    from ..io.bag_files import find_bags

    folder, out, object_mesh = Path(opts.folder), Path(opts.out), opts.object_mesh
    workers, report = opts.workers, opts.report
    if not Path(object_mesh).is_file():
        from ..errors import ModelFileError

        raise ModelFileError(f"object mesh file not found: {object_mesh}")
    if workers < 1:
        raise InvalidValueError(f"--workers must be >= 1; got {workers}")
    bags = find_bags(folder)
    if not bags:
        raise InvalidValueError(f"no bags (rosbag2 folders, .mcap or .db3 files) below {folder}")
    out.mkdir(parents=True, exist_ok=True)
    result = BatchReport()
    todo: list[tuple[Path, str]] = []
    outcomes: dict[str, BagOutcome] = {}
    for bag in bags:
        name = bag_name(bag, folder)
        done = out / name / "done.json"
        if done.is_file() and (out / name / "poses.json").is_file() and not opts.redo:
            outcomes[name] = BagOutcome(str(bag), name, "skipped", "finished earlier")
            report(f"[skip] {name}: finished earlier ({done})")
        else:
            todo.append((bag, name))
    report(f"{len(bags)} bag(s) in {folder}: {len(todo)} to track, {len(bags) - len(todo)} finished earlier")
    template = opts.track_options()
    args = [(str(bag), str(out / name), template) for bag, name in todo]
    count = 0

    def record(d: dict) -> None:
        nonlocal count
        count += 1
        o = BagOutcome(**d)
        outcomes[o.name] = o
        tag = "done" if o.status == "done" else "FAILED"
        report(f"[{count}/{len(todo)}] {tag} {o.name}: {o.message} ({o.seconds:.1f} s)")

    try:
        if opts.ray_address:
            run_on_ray(opts.ray_address, workers, args, record, report, track_one)
        elif args:
            _run_pool(workers, args, record)
    except KeyboardInterrupt:
        result.interrupted = True
        report("interrupted: finished bags are kept; run the same command again to continue")
    for bag in bags:
        name = bag_name(bag, folder)
        result.outcomes.append(outcomes.get(name, BagOutcome(str(bag), name, "failed", "not run (interrupted)")))
    (out / "batch.json").write_text(json.dumps({"folder": str(folder), "object_mesh": str(object_mesh),
                                                "outcomes": [asdict(o) for o in result.outcomes]}, indent=1) + "\n")
    n_failed = len(result.failed)
    report(f"batch: {sum(o.status == 'done' for o in result.outcomes)} done, "
           f"{sum(o.status == 'skipped' for o in result.outcomes)} skipped, {n_failed} failed; summary in "
           f"{out / 'batch.json'}")
    return result


def _run_pool(workers: int, args: list[tuple], record) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, int(os.environ.get("HANDYPRIORS_THREADS", "1")))
    ctx = mp.get_context("spawn")  # no fork of a process holding torch / warp threads
    with ProcessPoolExecutor(max_workers=min(workers, len(args)), mp_context=ctx) as pool:
        futures = {pool.submit(track_one, *a, threads=threads): a for a in args}
        try:
            for fut in as_completed(futures):
                a = futures[fut]
                try:
                    record(fut.result())
                except BrokenProcessPool as exc:
                    record({"bag": a[0], "name": Path(a[1]).name, "status": "failed",
                            "message": f"worker process died ({exc})"})
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: handypriors batch FOLDER --object-mesh MESH --out DIR")
