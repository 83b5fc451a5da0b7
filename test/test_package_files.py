"""Packaging: package.xml, setup.py/setup.cfg, the pinned requirement files, and a real colcon build."""

from __future__ import annotations

import configparser
import os
import re
import runpy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "handypriors_ros"
SHARE = f"share/{PACKAGE}"
CONSOLE_SCRIPTS = {
    "allegro_tracker": "handypriors_ros.allegro_tracker:main",
    "sequence_player": "handypriors_ros.sequence_player:main",
    "mano_tracker": "handypriors_ros.mano_tracker:main",
    "handypriors": "handypriors_core.cli:main",
}
EXEC_DEPENDS = {
    "rclpy", "sensor_msgs", "geometry_msgs", "visualization_msgs", "std_msgs", "std_srvs", "tf2_ros", "tf2_msgs",
    "diagnostic_msgs", "cv_bridge", "robot_state_publisher", "rviz2", "launch", "launch_ros", "python3-numpy",
    "python3-scipy", "python3-opencv", "python3-yaml", "python3-matplotlib",
}
PIP_ONLY = ("torch", "warp-lang", "trimesh", "urchin", "rosbags")
# what setup.py copies into the package: (source path, install path) for the files present now
SOURCE_ITEMS = ("package.xml", "setup.py", "setup.cfg", "resource", "handypriors_core", "handypriors_ros",
                "launch", "urdf", "config")


def _shared_files() -> dict[str, str]:
    """Every launch/urdf/config file of the source tree -> the directory it must be installed into."""
    expected = {}
    for path in sorted((REPO_ROOT / "launch").glob("*.launch.py")):
        expected[f"launch/{path.name}"] = f"{SHARE}/launch"
    for top in ("urdf", "config"):
        for path in sorted((REPO_ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
                relative = path.relative_to(REPO_ROOT).as_posix()
                expected[relative] = f"{SHARE}/{Path(relative).parent.as_posix()}"
    return expected


@pytest.fixture(scope="module")
def setup_kwargs():
    """The keyword arguments setup.py passes to setuptools.setup, read without building anything."""
    import setuptools

    captured = {}
    original, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        os.chdir(REPO_ROOT)
        runpy.run_path(str(REPO_ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
        os.chdir(cwd)
    assert captured, "setup.py did not call setuptools.setup"
    return captured


# ------------------------------------------------------------------------------------------ package.xml


def test_package_xml_declares_the_dependencies():
    text = (REPO_ROOT / "package.xml").read_text()
    root = ET.fromstring(text)
    assert root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    assert root.findtext("export/build_type") == "ament_python"
    assert root.findtext("buildtool_depend") == "ament_python"
    exec_depends = {e.text for e in root.iter("exec_depend")} | {e.text for e in root.iter("depend")}
    assert EXEC_DEPENDS <= exec_depends, f"missing: {sorted(EXEC_DEPENDS - exec_depends)}"
    assert "python3-pytest" in {e.text for e in root.iter("test_depend")}
    email = root.find("maintainer").get("email")
    assert re.fullmatch(r"[\w.+-]+@example\.com", email), email
    comments = " ".join(re.findall(r"<!--(.*?)-->", text, flags=re.DOTALL))
    for name in PIP_ONLY:  # these have no rosdep keys: the comment must say where they come from
        assert name in comments, f"package.xml comment does not mention {name}"
    assert "requirements.txt" in comments


def test_package_xml_passes_catkin_pkg_validation():
    catkin_package = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg (a colcon dependency) absent")
    package = catkin_package.parse_package(str(REPO_ROOT / "package.xml"))
    package.validate()  # raises on e.g. an invalid maintainer e-mail: colcon would fail the same way
    assert package.name == PACKAGE
    assert {d.name for d in package.exec_depends} >= EXEC_DEPENDS
    assert package.get_build_type() == "ament_python"


# ------------------------------------------------------------------------------------------ setup.py / setup.cfg


def test_setup_py_installs_every_launch_urdf_and_config_file(setup_kwargs):
    installed = {}
    for destination, sources in setup_kwargs["data_files"]:
        for source in sources:
            assert (REPO_ROOT / source).is_file(), f"data_files names a missing file {source}"
            installed[source] = destination
    assert installed["resource/handypriors_ros"] == "share/ament_index/resource_index/packages"
    assert installed["package.xml"] == SHARE
    expected = _shared_files()
    assert any(path.startswith("config/") for path in expected)  # the tree this test is about is there
    for source, destination in expected.items():
        assert installed.get(source) == destination, f"{source} should be installed into {destination}"


def test_setup_py_packages_scripts_and_version(setup_kwargs):
    packages = set(setup_kwargs["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for top in ("handypriors_core", "handypriors_ros")
        for p in (REPO_ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= packages and {"handypriors_core", "handypriors_ros"} <= packages
    assert not any(p.split(".")[0] in {"test", "bench", "scripts"} for p in packages)
    scripts = dict(s.replace(" ", "").split("=") for s in setup_kwargs["entry_points"]["console_scripts"])
    assert scripts == {k: v.replace(" ", "") for k, v in CONSOLE_SCRIPTS.items()}
    assert setup_kwargs["version"] == ET.parse(REPO_ROOT / "package.xml").getroot().findtext("version")
    assert setup_kwargs["name"] == PACKAGE


def test_setup_cfg_puts_scripts_where_ros2_run_looks():
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO_ROOT / "setup.cfg")
    assert config["develop"]["script_dir"] == f"$base/lib/{PACKAGE}"
    assert config["install"]["install_scripts"] == f"$base/lib/{PACKAGE}"
    assert config["tool:pytest"]["testpaths"].split() == ["test"]


# ------------------------------------------------------------------------------------------ requirement pins


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]+\])?==(\S+)", line)
            assert match, f"{path.name}: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return pins


def test_requirement_pins_agree_with_the_constraints():
    constraints = _pins(REPO_ROOT / "constraints.txt")
    requirements = _pins(REPO_ROOT / "requirements.txt")
    ros = _pins(REPO_ROOT / "scripts" / "requirements-ros-jazzy.txt")
    assert requirements["torch"] == constraints["torch"] == "2.13.0"
    for name in ("warp-lang", "numpy", "scipy", "trimesh", "opencv-python-headless", "urchin", "rosbags",
                 "matplotlib", "pyyaml", "pytest", "pytest-xdist", "ruff", "colcon-common-extensions"):
        assert name in requirements, f"requirements.txt lacks {name}"
    for name, version in {**requirements, **ros}.items():
        assert constraints.get(name) == version, f"{name}=={version}, constraints.txt: {constraints.get(name)}"
    assert "urdfpy" not in constraints  # replaced by urchin (urdfpy breaks with numpy >= 1.24)
    # one ROS distro only: every ros-<distro>-* meta package is Jazzy, and the core is Jazzy's rclpy 7.x
    distros = {name.split("-")[1] for name in constraints if re.match(r"ros-(jazzy|kilted|humble|rolling)-", name)}
    assert distros == {"jazzy"}
    assert constraints["ros-rclpy"].startswith("7.")


# ------------------------------------------------------------------------------------------ colcon build


def _colcon() -> str | None:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("colcon", path=search)


def test_colcon_build_installs_the_package_layout(tmp_path):
    colcon = _colcon()
    if colcon is None:
        pytest.skip("colcon is not installed (make setup installs colcon-common-extensions)")
    source = tmp_path / "src" / PACKAGE
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for item in SOURCE_ITEMS:
        path = REPO_ROOT / item
        if path.is_dir():
            shutil.copytree(path, source / item, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, source / item)
    env = dict(os.environ, COLCON_HOME=str(tmp_path / "colcon_home"), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [colcon, "--log-base", "log", "build", "--base-paths", "src", "--build-base", "build",
         "--install-base", "install", "--event-handlers", "console_direct-"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    prefix = tmp_path / "install" / PACKAGE
    assert (prefix / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    assert (prefix / SHARE / "package.xml").read_bytes() == (REPO_ROOT / "package.xml").read_bytes()
    for relative, destination in _shared_files().items():
        installed = prefix / destination / Path(relative).name
        assert installed.is_file(), f"{relative} was not installed into {destination}"
        assert installed.read_bytes() == (REPO_ROOT / relative).read_bytes()
    for script in CONSOLE_SCRIPTS:
        path = prefix / "lib" / PACKAGE / script
        assert path.is_file() and os.access(path, os.X_OK), f"console script {script} missing in lib/{PACKAGE}"
        text = path.read_text()
        assert text.startswith("#!") and script in text
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "handypriors_core" / "errors.py").is_file()
    assert (site / "handypriors_ros" / "ros_environment.py").is_file()
    assert not (site / "test").exists()

    # the installed package finds its Fast DDS profile in the install tree, not in the source tree
    probe = subprocess.run(
        [sys.executable, "-c", "from handypriors_ros.ros_environment import find_fastdds_profile as f; print(f())"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == (prefix / SHARE / "config" / "fastdds_localhost_large.xml").resolve()
