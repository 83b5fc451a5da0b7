"""Every command of README.md is run (or, where it cannot run here, checked) so a renamed flag, a missing console
script or a wrong path in the README fails CI.

The README's ```bash blocks are split into commands (``&&``, ``;``, line ends; ``# comments`` dropped) and each is
handled by the first matching rule of :data:`RULES`; a command no rule knows fails the test (add a rule).

* ``python -m handypriors_core.synthetic.generate ...`` runs as written with ``--frames 5`` and a small image: its
  folder is the 5-frame sequence (and bag) the other commands get for ``BAG``, ``MESH``, ``SEQUENCE_FOLDER``, ``BAGS/``;
* ``handypriors track / eval / batch ...`` run on it (``a|b|c`` choices: the first one runs, each one parses);
  ``... --help`` runs as written;
* ``ros2 launch handypriors_ros <file> name:=value ...`` runs with ``--show-args``, and every ``name`` must be a
  declared argument (needs the ros2 launch stack; skipped where ``make setup`` could not install it);
* ``make <target>`` must be a target: ``make -n <target>`` succeeds;
* the robot workspace steps (``cd``, ``git clone``, ``pip install -r``, ``colcon build``, ``source``) check what
  they name: the requirement file, the package name of ``colcon build --packages-select``
  (``test/test_package_files.py`` runs the colcon build itself).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent


def readme_commands(text: str) -> list[str]:
    """Commands of the README's ```bash blocks, in order (continuation lines joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", line, maxsplit=1)[0].strip()
            for part in re.split(r"\s*(?:&&|;)\s*", line):
                if part:
                    commands.append(part)
    return commands


def _choices(argv: list[str]) -> list[list[str]]:
    """Every variant of ``argv`` with one alternative of each ``a|b|c`` word."""
    variants = [[]]
    for word in argv:
        options = word.split("|") if "|" in word and not word.startswith("-") else [word]
        variants = [v + [o] for v in variants for o in options]
    return variants


class Runner:
    """Runs README commands against a 5-frame generated sequence, in a scratch folder."""

    def __init__(self, root: Path):
        self.root = root
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                        HANDYPRIORS_THREADS="1", PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
        self.sequence: Path | None = None
        self.ran: list[str] = []

    def run(self, argv: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
        started = time.monotonic()
        result = subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout,
                                check=False)
        assert result.returncode == 0, f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        self.ran.append(f"{shlex.join(argv)}  [{time.monotonic() - started:.0f} s]")
        return result

    def placeholders(self, argv: list[str]) -> list[str]:
        assert self.sequence is not None, "the README must generate a sequence before using BAG / MESH"
        bags = self.root / "BAGS"
        if not bags.exists():
            bags.mkdir()
            shutil.copytree(self.sequence / "bag", bags / "seq_a")
        values = {"BAG": str(self.sequence / "bag"), "MESH": str(self.sequence / "object" / "model.obj"),
                  "SEQUENCE_FOLDER": str(self.sequence), "BAGS/": str(bags)}
        return [values.get(word, word) for word in argv]


def _console_script(name: str) -> str:
    path = BIN / name
    assert path.is_file() and os.access(path, os.X_OK), (
        f"{path} does not exist: `make setup` installs the package into .venv (pip install -e .)")
    return str(path)


def rule_generate(argv, runner: Runner):
    if argv[:3] != [".venv/bin/python", "-m", "handypriors_core.synthetic.generate"]:
        return False
    args = argv[3:]
    for flag, value in (("--frames", "5"), ("--width", "96"), ("--height", "72")):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    runner.run([sys.executable, "-m", "handypriors_core.synthetic.generate", *args, "--quiet", "--overwrite"])
    runner.sequence = runner.root / args[args.index("--out") + 1]
    assert (runner.sequence / "bag" / "metadata.yaml").is_file() and (runner.sequence / "gt.json").is_file()
    return True


def rule_handypriors(argv, runner: Runner):
    if not argv or argv[0] not in (".venv/bin/handypriors", "handypriors"):
        return False
    script = _console_script("handypriors")
    if "--help" in argv:
        runner.run([script, *argv[1:]])
        return True
    from handypriors_core import cli

    variants = _choices(runner.placeholders(argv[1:]))
    for variant in variants:  # every alternative parses (flags and choices exist) ...
        cli.build_parser().parse_args(variant)
    args = variants[0]  # ... and the first one runs
    if args[0] == "track":
        args += ["--max-frames", "5", "--no-progress"]
    elif args[0] == "batch":
        args += ["--max-frames", "5"]
    runner.run([script, *args])
    return True


def rule_ros2_launch(argv, runner: Runner):
    if argv[:2] != ["ros2", "launch"]:
        return False
    if importlib.util.find_spec("ros2launch") is None or shutil.which("ros2", path=runner.env["PATH"]) is None:
        runner.ran.append(f"SKIPPED (no ros2 launch stack): {shlex.join(argv)}")
        return True
    spec = importlib.util.spec_from_file_location("ament_prefix", REPO / "scripts" / "ament_prefix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prefix = module.make_prefix(runner.root / "prefix", REPO, sys.executable)
    env = dict(runner.env, AMENT_PREFIX_PATH=os.pathsep.join(filter(None, [str(prefix), sys.prefix])))
    package, launch_file = argv[2], argv[3]
    given = {a.split(":=", 1)[0] for a in argv[4:] if ":=" in a}
    result = subprocess.run(["ros2", "launch", package, launch_file, "--show-args"], cwd=runner.root, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    declared = set(re.findall(r"^\s+'(\w+)':", result.stdout, flags=re.MULTILINE))
    assert given <= declared, f"{shlex.join(argv)}: undeclared launch arguments {given - declared}"
    runner.ran.append(shlex.join(argv) + " (--show-args)")
    return True


def rule_make(argv, runner: Runner):
    if argv[0] != "make":
        return False
    result = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, f"make has no target {argv[1:]}: {result.stderr}"
    runner.ran.append(shlex.join(argv) + " (make -n)")
    return True


def rule_workspace(argv, runner: Runner):
    if argv[0] in ("cd", "source"):
        return True
    if argv[:2] == ["git", "clone"]:
        assert argv[-1] == ET.parse(REPO / "package.xml").getroot().findtext("name"), "clone into the package's name"
        return True
    if argv[:3] == ["pip", "install", "-r"]:
        requirement = Path(argv[3])
        assert (REPO / Path(*requirement.parts[1:])).is_file(), f"{requirement} is not in the repository"
        return True
    if argv[:2] == ["colcon", "build"]:
        assert argv[argv.index("--packages-select") + 1] == ET.parse(REPO / "package.xml").getroot().findtext("name")
        return True
    return False


RULES = (rule_generate, rule_handypriors, rule_ros2_launch, rule_make, rule_workspace)


def test_readme_commands_are_found():
    commands = readme_commands(README.read_text())
    assert len(commands) >= 10
    assert any("handypriors track" in c for c in commands) and any(c.startswith("ros2 launch") for c in commands)


def test_every_readme_command_runs(tmp_path):
    runner = Runner(tmp_path)
    unknown = []
    for command in readme_commands(README.read_text()):
        argv = shlex.split(command)
        if not any(rule(list(argv), runner) for rule in RULES):
            unknown.append(command)
    assert not unknown, f"README commands without a rule in {Path(__file__).name}: {unknown}"
    print("\n".join(runner.ran))
    assert any("track" in c for c in runner.ran) and any(" eval " in c for c in runner.ran)


@pytest.mark.parametrize("script", ["handypriors", "allegro_tracker", "sequence_player"])
def test_console_scripts_are_installed_in_the_venv(script):
    path = _console_script(script)
    if script == "handypriors":
        result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0 and "track" in result.stdout, result.stderr
