"""Run every benchmark: each ``bench/bench_<topic>.py`` ``main()`` in a subprocess of its own.

A failing benchmark does not stop the others; the exit status is non-zero when any failed.
Each benchmark writes ``bench/results/<topic>.json`` itself; this runner adds
``bench/results/run_all.json`` (status, exit code and wall time of each). Benchmarks that start ROS
nodes get a private ROS domain and localhost-only DDS, as in the tests.

Usage: ``python bench/run_all.py [TOPIC ...] [--timeout SECONDS] [--list]`` (``make bench`` runs all).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from handypriors_ros.ros_environment import reserve_domain_id, ros_environment  # after the sys.path line above

# Imports the benchmark file by path and calls its main(); a non-zero or non-None int return fails the run.
_RUNNER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location(sys.argv[2], sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
if not callable(getattr(module, "main", None)):
    sys.exit(f"{sys.argv[1]} has no main()")
status = module.main()
sys.exit(status if isinstance(status, int) else 0)
"""


def discover(topics: list[str] | None = None) -> list[Path]:
    """The ``bench_*.py`` files, sorted; restricted to ``topics`` (names without ``bench_``) if given."""
    found = sorted(BENCH_DIR.glob("bench_*.py"))
    if topics:
        by_topic = {p.stem.removeprefix("bench_"): p for p in found}
        unknown = sorted(set(topics) - set(by_topic))
        if unknown:
            raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(sorted(by_topic))}")
        found = [by_topic[t] for t in topics]
    return found


def run_one(path: Path, env: dict[str, str], timeout: float) -> dict:
    """Run one benchmark's main() in a subprocess; returns its record for run_all.json."""
    topic = path.stem.removeprefix("bench_")
    print(f"=== {topic} ({path.relative_to(REPO_ROOT)})", flush=True)
    start = time.monotonic()
    try:
        completed = subprocess.run([sys.executable, "-c", _RUNNER, str(path), path.stem], cwd=REPO_ROOT, env=env,
                                   timeout=timeout, check=False)
        code, status = completed.returncode, ("ok" if completed.returncode == 0 else "failed")
    except subprocess.TimeoutExpired:
        code, status = None, "timeout"
    seconds = time.monotonic() - start
    print(f"=== {topic}: {status} in {seconds:.1f} s", flush=True)
    return {"topic": topic, "file": path.name, "status": status, "returncode": code, "seconds": round(seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topics", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT", "1800")),
                        help="seconds per benchmark (default 1800 or $BENCH_TIMEOUT)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    benches = discover(args.topics)
    if args.list:
        print("\n".join(p.stem.removeprefix("bench_") for p in benches))
        return 0
    if not benches:
        print(f"no bench_*.py in {BENCH_DIR}")
        return 0
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    records = []
    with reserve_domain_id() as domain, tempfile.TemporaryDirectory(prefix="handypriors_bench_log_") as log_dir:
        env = ros_environment(domain_id=domain.domain_id, log_dir=log_dir)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        for path in benches:
            records.append(run_one(path, env, args.timeout))
    failed = [r["topic"] for r in records if r["status"] != "ok"]
    summary = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "benchmarks": records,
        "failed": failed,
    }
    (RESULTS_DIR / "run_all.json").write_text(json.dumps(summary, indent=2) + "\n")
    outcome = f"; failed: {', '.join(failed)}" if failed else ""
    print(f"{len(records) - len(failed)} of {len(records)} benchmarks succeeded{outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
