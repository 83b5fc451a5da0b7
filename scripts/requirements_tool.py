"""Small helpers for scripts/setup_env.sh, run with the virtual environment's interpreter.

Subcommands
-----------
``check FILE... [--only NAME...]``
    Exit 0 when every ``name==version`` pin of the requirement files is installed at exactly that
    version (a local label such as ``+cpu`` is ignored, as pip does). Prints what is missing.
    This is the fast path of ``make setup``: asking pip takes seconds, this takes milliseconds.
``without-distro FILE``
    Print the requirement lines of FILE minus the packages that a sourced ROS 2 distro already
    provides (numpy, scipy, OpenCV, matplotlib, PyYAML, pytest, colcon) when they are importable.
    Installing pip's copies over the distro's would break the distro's compiled modules
    (e.g. rclpy's message support is built against the distro's numpy).
``distro-constraints``
    Print constraint lines that pin the distro-provided packages to their installed versions.
``import-check MODULE... [--find-only]``
    Import each module (or, with ``--find-only``, only locate it) and report the ones that fail
    (exit 1 if any).
``editable-check NAME SOURCE``
    Exit 0 when distribution NAME is installed in editable mode from the folder SOURCE.
``drop-pytest-plugins DIST...``
    Remove the ``pytest11`` entry points of the installed distributions DIST (launch_testing's pytest
    plugins implement hooks with the ``path`` argument that pytest 9 removed: loaded, they stop every
    pytest run; the launch tests run ``launch_test`` in a subprocess instead).
``freeze``
    Print a new constraints.txt for this environment: every distribution pip installed, pinned,
    without local version labels (torch 2.13.0+cpu -> torch==2.13.0). The egg-info records that
    the ROS wheels and the generated tf2_msgs carry inside them are not pip's and are left out, and so
    is everything pip installed from a local folder (this package, the vendored ros2 launch stack).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path

# requirement name (normalised) -> module a ROS distro's apt packages provide for it
DISTRO_PROVIDED = {
    "numpy": "numpy",
    "scipy": "scipy",
    "opencv-python-headless": "cv2",
    "matplotlib": "matplotlib",
    "pyyaml": "yaml",
    "pytest": "pytest",
    "colcon-common-extensions": "colcon_core",
}

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def normalise(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> list[tuple[str, str, str]]:
    """Return ``(normalised name, version, original line)`` for each pinned line of a requirements file."""
    pins = []
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins.append((normalise(match.group(1)), match.group(3), line.strip()))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise SystemExit(f"{path}: unpinned requirement line {line.strip()!r} (use name==version)")
    return pins


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cmd_check(files: list[str], only: list[str] | None) -> int:
    wanted = {normalise(n) for n in only} if only else None
    missing = []
    for file in files:
        for name, version, _ in read_pins(Path(file)):
            if wanted is not None and name not in wanted:
                continue
            have = installed_version(name)
            if have is None or have.split("+", 1)[0] != version:
                missing.append(f"{name}=={version} (installed: {have or 'none'})")
    for item in missing:
        print(f"  needs {item}")
    return 1 if missing else 0


def _distro_has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cmd_without_distro(file: str) -> int:
    for name, _, line in read_pins(Path(file)):
        module = DISTRO_PROVIDED.get(name)
        if module is not None and _distro_has(module):
            continue
        print(line)
    return 0


def cmd_distro_constraints() -> int:
    for name, module in DISTRO_PROVIDED.items():
        if _distro_has(module):
            version = installed_version(name if name != "opencv-python-headless" else "opencv-python")
            if version is not None:
                print(f"{name}=={version}")
    return 0


def cmd_import_check(modules: list[str], find_only: bool = False) -> int:
    # Import from the environment only: the script's own directory (sys.path[0]) must not shadow anything.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(here)]
    failed = []
    for module in modules:
        try:
            if find_only:
                if importlib.util.find_spec(module) is None:
                    raise ModuleNotFoundError(f"No module named {module!r}")
            else:
                importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - report every kind of import failure
            failed.append(f"{module}: {type(exc).__name__}: {exc}")
    for item in failed:
        print(f"  cannot import {item}", file=sys.stderr)
    return 1 if failed else 0


def _local_source(dist: importlib.metadata.Distribution) -> tuple[str, bool] | None:
    """``(folder, editable)`` for a distribution pip installed from a local folder, else None."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    record = json.loads(text)
    url = record.get("url", "")
    if not url.startswith("file://") or "dir_info" not in record:
        return None
    return url.removeprefix("file://"), bool(record["dir_info"].get("editable"))


def cmd_editable_check(name: str, source: str) -> int:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        print(f"  {name} is not installed")
        return 1
    local = _local_source(dist)
    if local is None or not local[1] or Path(local[0]).resolve() != Path(source).resolve():
        print(f"  {name} is not an editable install of {source} ({local})")
        return 1
    return 0


def cmd_drop_pytest_plugins(names: list[str]) -> int:
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        records = [f for f in dist.files or [] if f.name == "entry_points.txt" and ".dist-info" in str(f)]
        if not records or not Path(records[0].locate()).is_file():
            continue
        path = Path(records[0].locate())
        text = path.read_text()
        kept = re.sub(r"\[pytest11\]\n(?:[^\[\n][^\n]*\n?)*", "", text).strip()
        if kept != text.strip():
            path.write_text(kept + "\n" if kept else "")
            print(f"  dropped the pytest plugin entry point of {name}")
    return 0


CONSTRAINTS_HEADER = """\
# Full pins of the resolved environment: every package pip installed into a .venv made by
# `make setup` with no ROS distro sourced (Python dependencies + ROS 2 Jazzy wheels). setup_env.sh
# passes it to every pip call: it fixes the transitive packages, keeps torch at the CPU build 2.13.0
# and stops a stray unprefixed ros-* name from pulling Kilted wheels.
# setuptools: torch 2.13 needs >= 77.0.3 and colcon-core 0.21 needs < 80.
# Regenerate after changing requirements.txt or scripts/requirements-ros-jazzy.txt:
#   .venv/bin/python scripts/requirements_tool.py freeze > constraints.txt
"""


def cmd_freeze() -> int:
    pins = {}
    for dist in importlib.metadata.distributions():
        installer = (dist.read_text("INSTALLER") or "").strip()
        name = dist.metadata["Name"]
        if installer != "pip" or not name or normalise(name) == "pip" or _local_source(dist) is not None:
            continue
        pins[normalise(name)] = f"{name}=={dist.version.split('+', 1)[0]}"
    sys.stdout.write(CONSTRAINTS_HEADER)
    for key in sorted(pins):
        print(pins[key])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check")
    check.add_argument("files", nargs="+")
    check.add_argument("--only", nargs="+")
    without = sub.add_parser("without-distro")
    without.add_argument("file")
    sub.add_parser("distro-constraints")
    imports = sub.add_parser("import-check")
    imports.add_argument("modules", nargs="+")
    imports.add_argument("--find-only", action="store_true")
    editable = sub.add_parser("editable-check")
    editable.add_argument("name")
    editable.add_argument("source")
    drop = sub.add_parser("drop-pytest-plugins")
    drop.add_argument("names", nargs="+")
    sub.add_parser("freeze")
    args = parser.parse_args(argv)
    if args.command == "check":
        return cmd_check(args.files, args.only)
    if args.command == "without-distro":
        return cmd_without_distro(args.file)
    if args.command == "distro-constraints":
        return cmd_distro_constraints()
    if args.command == "editable-check":
        return cmd_editable_check(args.name, args.source)
    if args.command == "drop-pytest-plugins":
        return cmd_drop_pytest_plugins(args.names)
    if args.command == "freeze":
        return cmd_freeze()
    return cmd_import_check(args.modules, args.find_only)


if __name__ == "__main__":
    sys.exit(main())
