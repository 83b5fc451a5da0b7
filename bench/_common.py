"""What the ``bench_<topic>.py`` scripts share: median timing and writing ``bench/results/<topic>.json``.

Import it as ``bench._common`` once the repository root is on ``sys.path`` (``make bench`` / ``run_all.py`` run
every benchmark from the root; a script run directly puts the root on ``sys.path`` itself).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


def shared_dir() -> Path:
    """The sibling checkout with the paper and the development data: ``$HANDYPRIORS_SHARED_DIR`` or ``../shared``
    (the tests' ``shared_dir`` fixture reads the same variable). It may not exist: callers skip what needs it."""
    return Path(os.environ.get("HANDYPRIORS_SHARED_DIR", ROOT.parent / "shared"))


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time [ms] of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls (3 decimals)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)


def write_results(topic: str, results: Any) -> Path:
    """Write ``results`` as ``bench/results/<topic>.json`` (indented JSON, one trailing newline); returns the path."""
    path = RESULTS_DIR / f"{topic}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation) of ``values``; NaN when empty."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (2 decimals), to print beside wall-clock figures."""
    return [round(v, 2) for v in os.getloadavg()]


def quiet_warp() -> None:
    """Silence warp's kernel-loading log lines (when warp is installed)."""
    try:
        import warp as wp

        wp.config.log_level = getattr(wp, "LOG_ERROR", 40)
        wp.config.quiet = True
    except ImportError:
        pass


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> str | None:
    """SIGINT ``process`` (if still running) as Ctrl-C would, wait ``timeout`` seconds, then kill it; returns its
    captured stdout (None when it was not piped)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output
