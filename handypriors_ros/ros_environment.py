"""Environment for ROS 2 processes that must stay on this host: tests, benchmarks and the demo.

Nothing here imports rclpy: the settings below are read by rcl and Fast DDS when a context and its
first node are created, so they must be in ``os.environ`` (or a child's environment) before that.

What :func:`ros_environment` sets
---------------------------------
* ``ROS_DOMAIN_ID``: a private domain, normally one reserved with :func:`reserve_domain_id`, so that
  concurrent test runs and xdist workers on one machine never see each other's topics.
* Localhost-only DDS, in one of two ways:

  - with the project's Fast DDS profile ``config/fastdds_localhost_large.xml`` (the default when
    the file is found): shared memory with a 16 MiB segment plus loopback UDP, selected through
    ``FASTRTPS_DEFAULT_PROFILES_FILE`` (Humble, Jazzy: Fast DDS 2) or ``FASTDDS_DEFAULT_PROFILES_FILE``
    (Kilted and later: Fast DDS 3) together with ``ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT``
    and ``RMW_IMPLEMENTATION=rmw_fastrtps_cpp``. Large images then cross in a few milliseconds;
  - without it: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (``ROS_LOCALHOST_ONLY=1`` on Humble,
    which predates the discovery range).

  ``SYSTEM_DEFAULT`` without a readable profile would mean multicast discovery on the LAN, so it is
  only ever set together with a profile file that exists.
* ``ROS_LOG_DIR``: where rcl writes its per-process log files (a temporary directory in tests).
* ``AMENT_PREFIX_PATH``: gains the virtual environment when ROS 2 came from PyPI wheels into it.

Environment knob: ``HANDYPRIORS_DDS_PROFILE`` = ``0`` (no profile: LOCALHOST discovery), a path
(that profile file), or unset / ``1`` (the project's profile).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROFILE_FILE_NAME = "fastdds_localhost_large.xml"
PROFILE_SWITCH = "HANDYPRIORS_DDS_PROFILE"
FASTDDS2_PROFILE_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
FASTDDS3_PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
# distros whose rmw_fastrtps ships Fast DDS 2.x (reads FASTRTPS_DEFAULT_PROFILES_FILE only)
_FASTDDS2_DISTROS = frozenset({"humble", "iron", "jazzy"})
# distros without ROS_AUTOMATIC_DISCOVERY_RANGE (only ROS_LOCALHOST_ONLY)
_NO_DISCOVERY_RANGE_DISTROS = frozenset({"humble"})
# the ros-python-wheels meta packages that identify the distro of a wheels environment
_WHEEL_DISTROS = ("jazzy", "kilted")
# environment variables the bootstrapper of the ROS wheels sets before re-executing Python
_BOOTSTRAP_GUARD = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"

DOMAIN_ID_FIRST = 1
DOMAIN_ID_LAST = 101  # 0..101 is the range that is safe for Fast DDS's port mapping on Linux


def detect_ros_distro(environ: Mapping[str, str] | None = None) -> str | None:
    """Name of the ROS 2 distro in use, lower case, or ``None`` when none is found.

    A sourced distro announces itself in ``ROS_DISTRO``; ROS 2 from PyPI wheels is recognised by
    its ``ros-<distro>-rclpy`` meta package.
    """
    environ = os.environ if environ is None else environ
    distro = environ.get("ROS_DISTRO", "").strip().lower()
    if distro:
        return distro
    for name in _WHEEL_DISTROS:
        try:
            importlib.metadata.version(f"ros-{name}-rclpy")
        except importlib.metadata.PackageNotFoundError:
            continue
        return name
    return None


def profile_env_vars(distro: str | None) -> tuple[str, ...]:
    """Environment variable(s) through which Fast DDS of ``distro`` loads an XML profile.

    ``None`` (unknown distro) gives both names: each Fast DDS generation ignores the other's name.
    """
    if distro is None:
        return (FASTDDS2_PROFILE_VAR, FASTDDS3_PROFILE_VAR)
    if distro.lower() in _FASTDDS2_DISTROS:
        return (FASTDDS2_PROFILE_VAR,)
    return (FASTDDS3_PROFILE_VAR,)


def find_fastdds_profile() -> Path | None:
    """Path of the project's ``fastdds_localhost_large.xml``, or ``None`` when it is not found.

    Looked for in the source tree (``config/`` beside this package), in an install tree made by
    colcon or pip (``<prefix>/share/handypriors_ros/config``) and through the ament index.
    """
    here = Path(__file__).resolve()
    candidates = [here.parents[1] / "config" / PROFILE_FILE_NAME]
    if len(here.parents) > 4:  # <prefix>/lib/pythonX.Y/site-packages/handypriors_ros/<this file>
        candidates.append(here.parents[4] / "share" / "handypriors_ros" / "config" / PROFILE_FILE_NAME)
    candidates.append(Path(sys.prefix) / "share" / "handypriors_ros" / "config" / PROFILE_FILE_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        candidate = Path(get_package_share_directory("handypriors_ros")) / "config" / PROFILE_FILE_NAME
    except (PackageNotFoundError, LookupError, ValueError):
        return None
    return candidate if candidate.is_file() else None


def _profile_from_switch(environ: Mapping[str, str]) -> Path | None:
    """The profile selected by ``HANDYPRIORS_DDS_PROFILE`` (see the module docstring)."""
    value = environ.get(PROFILE_SWITCH, "").strip()
    if value.lower() in {"0", "off", "false", "no"}:
        return None
    if value and value.lower() not in {"1", "on", "true", "yes"}:
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{PROFILE_SWITCH}={value}: no such Fast DDS profile file")
        return path
    return find_fastdds_profile()


def wheels_prefix() -> Path | None:
    """The virtual environment's prefix when ROS 2 was installed into it from PyPI wheels."""
    prefix = Path(sys.prefix)
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / "rclpy"
    return prefix if marker.is_file() else None


def ros_environment(
    base: Mapping[str, str] | None = None,
    *,
    domain_id: int,
    log_dir: str | os.PathLike[str] | None = None,
    use_large_shm_profile: bool | None = None,
    profile: str | os.PathLike[str] | None = None,
    distro: str | None = None,
    interpreter: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Environment for ROS 2 processes that talk only to each other, on this host.

    Args:
        base: environment to start from (default: ``os.environ``); it is not modified.
        domain_id: ``ROS_DOMAIN_ID``, 0..232 (use :func:`reserve_domain_id` for a private one).
        log_dir: ``ROS_LOG_DIR``; ``None`` keeps the value of ``base``.
        use_large_shm_profile: ``True`` requires the Fast DDS profile, ``False`` uses LOCALHOST
            discovery without it, ``None`` follows ``HANDYPRIORS_DDS_PROFILE`` (default: the profile
            when its file is found).
        profile: explicit profile file (implies ``use_large_shm_profile=True``).
        distro: ROS 2 distro name; default :func:`detect_ros_distro` of ``base``.
        interpreter: Python that will run in this environment. When it belongs to another virtual
            environment, the ROS wheels' bootstrap guard is dropped so that its own bootstrapper runs.

    Returns:
        a new ``dict`` of environment variables.

    Raises:
        ValueError: ``domain_id`` outside 0..232.
        FileNotFoundError: the profile was required and its file does not exist.
    """
    env = dict(os.environ if base is None else base)
    if not isinstance(domain_id, int) or isinstance(domain_id, bool) or not 0 <= domain_id <= 232:
        raise ValueError(f"domain_id: expected an int in 0..232, got {domain_id!r}")
    distro = (distro or detect_ros_distro(env) or "").lower() or None

    profile_path: Path | None
    if profile is not None:
        profile_path = Path(profile)
        if not profile_path.is_file():
            raise FileNotFoundError(f"profile: no such Fast DDS profile file {profile_path}")
    elif use_large_shm_profile is True:
        profile_path = find_fastdds_profile()
        if profile_path is None:
            raise FileNotFoundError(f"use_large_shm_profile: {PROFILE_FILE_NAME} not found")
    elif use_large_shm_profile is False:
        profile_path = None
    else:
        profile_path = _profile_from_switch(env)

    env["ROS_DOMAIN_ID"] = str(domain_id)
    for name in (FASTDDS2_PROFILE_VAR, FASTDDS3_PROFILE_VAR, "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS"):
        env.pop(name, None)
    if profile_path is not None:
        for name in profile_env_vars(distro):
            env[name] = str(profile_path.resolve())
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
        env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    else:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        if distro in _NO_DISCOVERY_RANGE_DISTROS:
            env["ROS_LOCALHOST_ONLY"] = "1"

    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)

    prefix = wheels_prefix()
    if prefix is not None:
        entries = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        if str(prefix) not in entries:
            env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), *entries])

    if interpreter is not None and Path(interpreter).absolute().parent.parent != Path(sys.prefix).absolute():
        env.pop(_BOOTSTRAP_GUARD, None)
        own = str(Path(sys.prefix).absolute())
        kept = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and not p.startswith(own)]
        if kept:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(kept)
        else:
            env.pop("LD_LIBRARY_PATH", None)
    return env


def apply_ros_environment(**kwargs) -> dict[str, str]:
    """Apply :func:`ros_environment` to ``os.environ`` of this process (before rclpy starts).

    Takes the keyword arguments of :func:`ros_environment` except ``base``; returns the new environment.
    """
    env = ros_environment(os.environ, **kwargs)
    for name in list(os.environ):
        if name not in env:
            del os.environ[name]
    os.environ.update(env)
    return env


@dataclass
class DomainReservation:
    """A ROS domain ID held for this process through an exclusive lock file.

    The lock is released by :meth:`release`, by leaving a ``with`` block, or when the process exits
    (the kernel drops ``flock`` locks with the file descriptor). Child processes may use the domain:
    the descriptor is not inherited, the reservation stays with the process that made it.
    """

    domain_id: int
    lock_path: Path
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self):  # returns the reservation itself
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "handypriors_ros_domains"


def reserve_domain_id(
    first: int = DOMAIN_ID_FIRST,
    last: int = DOMAIN_ID_LAST,
    lock_dir: str | os.PathLike[str] | None = None,
) -> DomainReservation:
    """Reserve a ROS domain ID in ``first..last`` that no other cooperating process on this host holds.

    Each ID has a lock file in ``lock_dir`` (default: ``<tmp>/handypriors_ros_domains``); the search
    starts at an offset derived from the process ID so that concurrent callers rarely collide.

    Raises:
        ValueError: empty or out-of-range interval.
        RuntimeError: every ID in the interval is held by another process.
    """
    if not 0 <= first <= last <= 232:
        raise ValueError(f"first, last: expected 0 <= first <= last <= 232, got {first}, {last}")
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        directory.chmod(0o1777)  # shared by every user of the machine, like /tmp
    except PermissionError:
        pass
    count = last - first + 1
    start = os.getpid() % count
    for step in range(count):
        domain_id = first + (start + step) % count
        path = directory / f"domain_{domain_id}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return DomainReservation(domain_id=domain_id, lock_path=path, _fd=fd)
    raise RuntimeError(f"reserve_domain_id: all ROS domain IDs {first}..{last} are in use (locks in {directory})")
