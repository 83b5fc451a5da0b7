"""Suite-wide test setup.

At import, before any test module can import rclpy, every test process (each xdist worker too)

* reserves a private ROS domain ID (a lock file per ID, so concurrent runs on one machine never
  share a domain),
* keeps DDS on this host: the project's large shared-memory Fast DDS profile
  (``config/fastdds_localhost_large.xml``) with ``ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT``, or
  ``LOCALHOST`` discovery when ``HANDYPRIORS_DDS_PROFILE=0``,
* points ``ROS_LOG_DIR`` at a temporary directory that is removed at exit.

The settings live in ``os.environ``, so subprocesses started by tests (``sys.executable -m ...``)
inherit them. See :mod:`handypriors_ros.ros_environment`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `pytest` without `python -m` (setup.cfg sets pythonpath as well)
    sys.path.insert(0, str(REPO_ROOT))

from handypriors_ros.ros_environment import (  # after the sys.path line above
    apply_ros_environment,
    reserve_domain_id,
)

# One torch intra-op thread per test process: the suite runs two xdist workers on two cores, and the small ops
# of the estimators stall for milliseconds waking a second OpenMP thread on a busy machine.
torch.set_num_threads(1)

_DOMAIN = reserve_domain_id()
_LOG_DIR = tempfile.mkdtemp(prefix="handypriors_ros_log_")
atexit.register(shutil.rmtree, _LOG_DIR, ignore_errors=True)
apply_ros_environment(domain_id=_DOMAIN.domain_id, log_dir=_LOG_DIR)

# The sibling checkout with the paper, recipes and development data; never needed by the tests.
SHARED_DIR = Path(os.environ.get("HANDYPRIORS_SHARED_DIR", REPO_ROOT.parent / "shared"))


def pytest_report_header(config: pytest.Config) -> str:
    profile = os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    dds = f"profile {Path(profile).name}" if profile else os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    return f"ROS: domain {_DOMAIN.domain_id}, DDS {dds}, ROS_LOG_DIR {_LOG_DIR}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """The ROS domain reserved for this test process (also in ``os.environ['ROS_DOMAIN_ID']``)."""
    return _DOMAIN.domain_id


@pytest.fixture
def ros_env() -> dict[str, str]:
    """A copy of the environment for ROS subprocesses: private domain, localhost-only DDS, log dir."""
    return dict(os.environ)


@pytest.fixture
def ros_context():
    """An initialised ``rclpy.Context`` of its own on a ROS domain reserved for this test alone (so no DDS
    participant of another test, in this process or another, can reach its nodes); shut down after the test."""
    import rclpy

    with reserve_domain_id() as domain:
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        try:
            yield context
        finally:
            rclpy.try_shutdown(context=context)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (development data, paper); the test is skipped where it does not exist."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} not available")
    return SHARED_DIR
