"""The test and runtime environment: DDS isolation settings, domain reservation, ROS 2 messaging.

The last tests start real ROS 2 processes (as nodes run in practice): one publishes a 640x480 rgb8
image and a latched ``/tf_static`` TFMessage, another receives both; a third, in another domain,
must receive nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from handypriors_ros import ros_environment as rosenv

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE = REPO_ROOT / "config" / rosenv.PROFILE_FILE_NAME
WIDTH, HEIGHT = 640, 480


# ------------------------------------------------------------------------------------------ settings


def test_profile_mode_uses_the_variable_of_each_fast_dds_generation():
    base = {"ROS_LOCALHOST_ONLY": "1", "FASTDDS_DEFAULT_PROFILES_FILE": "/elsewhere.xml", "PATH": "/bin"}
    jazzy = rosenv.ros_environment(base, domain_id=17, distro="jazzy", use_large_shm_profile=True, log_dir="/tmp/x")
    assert jazzy["ROS_DOMAIN_ID"] == "17"
    assert jazzy["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(PROFILE.resolve())
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in jazzy  # Jazzy would ignore it; a stale one must not linger
    assert jazzy["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
    assert jazzy["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert "ROS_LOCALHOST_ONLY" not in jazzy
    assert jazzy["ROS_LOG_DIR"] == "/tmp/x"
    assert jazzy["PATH"] == "/bin"
    assert base["FASTDDS_DEFAULT_PROFILES_FILE"] == "/elsewhere.xml"  # input left alone

    kilted = rosenv.ros_environment(base, domain_id=3, distro="kilted", use_large_shm_profile=True)
    assert kilted["FASTDDS_DEFAULT_PROFILES_FILE"] == str(PROFILE.resolve())
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in kilted

    # distro unknown: both names, each Fast DDS generation reads its own
    assert set(rosenv.profile_env_vars(None)) == {"FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"}
    assert rosenv.profile_env_vars("Humble") == ("FASTRTPS_DEFAULT_PROFILES_FILE",)
    assert rosenv.profile_env_vars("rolling") == ("FASTDDS_DEFAULT_PROFILES_FILE",)


def test_without_profile_discovery_is_localhost_only():
    env = rosenv.ros_environment({"FASTRTPS_DEFAULT_PROFILES_FILE": str(PROFILE)}, domain_id=5, distro="jazzy",
                                 use_large_shm_profile=False)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in env
    assert "ROS_LOCALHOST_ONLY" not in env
    humble = rosenv.ros_environment({}, domain_id=5, distro="humble", use_large_shm_profile=False)
    assert humble["ROS_LOCALHOST_ONLY"] == "1"  # Humble has no discovery range


def test_profile_switch_variable(tmp_path):
    off = rosenv.ros_environment({rosenv.PROFILE_SWITCH: "0"}, domain_id=9, distro="jazzy")
    assert off["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    custom = tmp_path / "custom.xml"
    custom.write_text("<dds/>")
    chosen = rosenv.ros_environment({rosenv.PROFILE_SWITCH: str(custom)}, domain_id=9, distro="jazzy")
    assert chosen["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(custom.resolve())
    with pytest.raises(FileNotFoundError, match="HANDYPRIORS_DDS_PROFILE"):
        rosenv.ros_environment({rosenv.PROFILE_SWITCH: str(tmp_path / "missing.xml")}, domain_id=9)
    with pytest.raises(FileNotFoundError, match="profile"):
        rosenv.ros_environment({}, domain_id=9, profile=tmp_path / "missing.xml")


@pytest.mark.parametrize("bad", [-1, 233, 1.5, "4", True])
def test_domain_id_is_validated(bad):
    with pytest.raises(ValueError, match="domain_id"):
        rosenv.ros_environment({}, domain_id=bad)


def test_foreign_interpreter_drops_the_wheels_bootstrap_guard():
    own_lib = str(Path(sys.prefix) / "lib")
    base = {"_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1", "LD_LIBRARY_PATH": f"{own_lib}:/opt/other/lib"}
    foreign = rosenv.ros_environment(base, domain_id=1, interpreter="/some/other/venv/bin/python")
    assert "_ROS_WHEELS_BOOTSTRAP_COMPLETE" not in foreign
    assert foreign["LD_LIBRARY_PATH"] == "/opt/other/lib"
    same = rosenv.ros_environment(base, domain_id=1, interpreter=Path(sys.prefix) / "bin" / "python")
    assert same["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] == "1"
    assert same["LD_LIBRARY_PATH"] == base["LD_LIBRARY_PATH"]


def test_domain_reservations_are_exclusive(tmp_path):
    first = rosenv.reserve_domain_id(1, 2, lock_dir=tmp_path)
    second = rosenv.reserve_domain_id(1, 2, lock_dir=tmp_path)
    assert {first.domain_id, second.domain_id} == {1, 2}
    with pytest.raises(RuntimeError, match="in use"):
        rosenv.reserve_domain_id(1, 2, lock_dir=tmp_path)
    first.release()
    assert not first.held
    with rosenv.reserve_domain_id(1, 2, lock_dir=tmp_path) as again:
        assert again.domain_id == first.domain_id
    second.release()
    with pytest.raises(ValueError):
        rosenv.reserve_domain_id(5, 4, lock_dir=tmp_path)


def test_reservation_holds_against_other_processes(tmp_path):
    held = rosenv.reserve_domain_id(7, 7, lock_dir=tmp_path)
    code = (
        "import sys; from handypriors_ros.ros_environment import reserve_domain_id\n"
        "try:\n    reserve_domain_id(7, 7, lock_dir=sys.argv[1])\nexcept RuntimeError:\n    sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, timeout=60, check=False)
    assert result.returncode == 3
    held.release()
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, timeout=60, check=False)
    assert result.returncode == 0


def test_fastdds_profile_keeps_traffic_on_loopback_with_large_shared_memory():
    ns = {"dds": "http://www.eprosima.com"}
    root = ET.parse(PROFILE).getroot()
    transports = {
        t.findtext("dds:transport_id", namespaces=ns): t for t in root.iterfind(".//dds:transport_descriptor", ns)
    }
    kinds = {t.findtext("dds:type", namespaces=ns) for t in transports.values()}
    assert kinds == {"SHM", "UDPv4"}
    shm = next(t for t in transports.values() if t.findtext("dds:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("dds:segment_size", namespaces=ns)) >= 4 * WIDTH * HEIGHT * 3  # room for images
    participant = root.find(".//dds:participant", ns)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext(".//dds:useBuiltinTransports", namespaces=ns) == "false"
    used = [e.text for e in participant.iterfind(".//dds:userTransports/dds:transport_id", ns)]
    assert sorted(used) == sorted(transports)
    addresses = [e.text for e in root.iterfind(".//dds:address", ns)]
    assert addresses and set(addresses) == {"127.0.0.1"}


def test_suite_environment_is_private_and_local(ros_domain_id):
    assert os.environ["ROS_DOMAIN_ID"] == str(ros_domain_id) != "0"
    assert Path(os.environ["ROS_LOG_DIR"]).is_dir()
    assert "ROS_LOCALHOST_ONLY" not in os.environ or rosenv.detect_ros_distro() == "humble"
    profile = os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    if profile:
        assert Path(profile).is_file()
        assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
        var = rosenv.profile_env_vars(rosenv.detect_ros_distro())
        assert all(os.environ.get(name) == profile for name in var)
    else:
        assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


# ------------------------------------------------------------------------------------------ ROS 2


def _require_rclpy():
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        if os.environ.get("HANDYPRIORS_ALLOW_NO_ROS") == "1":
            pytest.skip(f"rclpy not importable ({exc}) and HANDYPRIORS_ALLOW_NO_ROS=1")
        pytest.fail(f"rclpy is not importable: {exc}. Run `make setup` (or source a ROS 2 distro).")


def test_generated_tf2_msgs_match_upstream_type_hashes():
    _require_rclpy()
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_typestore

    distro = rosenv.detect_ros_distro()
    if distro == "humble":
        pytest.skip("Humble's rosidl has no type hashes")
    store = get_typestore(Stores.ROS2_JAZZY if distro == "jazzy" else Stores.LATEST)
    share = Path(get_package_share_directory("tf2_msgs"))
    checked = []
    for name in ("TFMessage", "TF2Error"):
        description = json.loads((share / "msg" / f"{name}.json").read_text())
        hashes = {h["type_name"]: h["hash_string"] for h in description["type_hashes"]}
        type_name = f"tf2_msgs/msg/{name}"
        assert hashes[type_name] == store.hash_rihs01(type_name)
        checked.append(type_name)
    assert checked == ["tf2_msgs/msg/TFMessage", "tf2_msgs/msg/TF2Error"]


def _image_bytes() -> bytes:
    """A deterministic, non-repeating 640x480 rgb8 pattern."""
    index = np.arange(WIDTH * HEIGHT * 3, dtype=np.uint64)
    return ((index * np.uint64(2654435761)) >> np.uint64(13)).astype(np.uint8).tobytes()


PUBLISHER = textwrap.dedent(
    """
    import array, sys, time
    import numpy as np
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from geometry_msgs.msg import TransformStamped
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    node = Node("env_probe_publisher")
    latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    tf_static = node.create_publisher(TFMessage, "/tf_static", latched)
    images = node.create_publisher(Image, "env_probe/image", QoSProfile(depth=5))
    t = TransformStamped()
    t.header.stamp = node.get_clock().now().to_msg()
    t.header.frame_id = "camera_link"
    t.child_frame_id = "camera_color_optical_frame"
    t.transform.translation.x = 0.015
    t.transform.rotation.x, t.transform.rotation.y = -0.5, 0.5
    t.transform.rotation.z, t.transform.rotation.w = -0.5, 0.5
    tf_static.publish(TFMessage(transforms=[t]))  # before any subscriber exists: must be latched
    index = np.arange(640 * 480 * 3, dtype=np.uint64)
    data = ((index * np.uint64(2654435761)) >> np.uint64(13)).astype(np.uint8).tobytes()
    image = Image(height=480, width=640, encoding="rgb8", is_bigendian=0, step=640 * 3)
    image.header.frame_id = "camera_color_optical_frame"
    image.data = array.array("B", data)
    print("READY", flush=True)
    deadline = time.monotonic() + float(sys.argv[1])
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            image.header.stamp = node.get_clock().now().to_msg()
            images.publish(image)
            rclpy.spin_once(node, timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    """
)

SUBSCRIBER = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    node = Node("env_probe_subscriber")
    got = {}

    def on_image(msg):
        got.setdefault("image", {"width": msg.width, "height": msg.height, "encoding": msg.encoding,
                                 "step": msg.step, "frame_id": msg.header.frame_id,
                                 "sha256": hashlib.sha256(bytes(msg.data)).hexdigest()})

    def on_tf_static(msg):
        got.setdefault("tf_static", [
            {"parent": t.header.frame_id, "child": t.child_frame_id, "x": t.transform.translation.x,
             "q": [t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w]}
            for t in msg.transforms])

    latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(TFMessage, "/tf_static", on_tf_static, latched)
    node.create_subscription(Image, "env_probe/image", on_image, QoSProfile(depth=5))
    start = time.monotonic()
    deadline = start + float(sys.argv[1])
    while time.monotonic() < deadline and set(got) != {"image", "tf_static"}:
        rclpy.spin_once(node, timeout_sec=0.1)
    got["seconds"] = time.monotonic() - start
    got["env"] = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                 "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")}
    print(json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    """
)


def _wait_for_line(process: subprocess.Popen, expected: str, timeout: float) -> None:
    """Read ``process``'s stdout until a line equals ``expected``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = process.stdout.readline()
            if line.strip() == expected:
                return
            if not line and process.poll() is not None:
                break
    stderr = process.stderr.read() if process.poll() is not None else "(still running)"
    pytest.fail(f"publisher did not print {expected!r} within {timeout} s; stderr: {stderr}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_image_and_latched_tf_static_cross_processes(ros_env, ros_domain_id):
    """A node process publishes; another receives both messages; a third in another domain receives none."""
    _require_rclpy()
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, "90"], env=ros_env, cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    other_domain = rosenv.reserve_domain_id()
    receiver = outsider = None
    try:
        _wait_for_line(publisher, "READY", timeout=60)
        # the subscriber waits for both messages (discovery can take ~3 s on a busy machine)
        receiver = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, "30"], env=ros_env, cwd=REPO_ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # same program, other domain: a window of 5 s in which nothing may arrive
        outsider_env = rosenv.ros_environment(ros_env, domain_id=other_domain.domain_id)
        outsider = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, "5"], env=outsider_env, cwd=REPO_ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = receiver.communicate(timeout=90)
        outsider_out, outsider_err = outsider.communicate(timeout=90)
    finally:
        _stop(publisher)
        other_domain.release()
        for running in (receiver, outsider):
            if running is not None and running.poll() is None:
                running.kill()
                running.wait()

    assert receiver.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    assert "image" in got, f"no image within {got['seconds']:.1f} s; stderr: {err}"
    assert "tf_static" in got, f"no /tf_static within {got['seconds']:.1f} s; stderr: {err}"
    assert got["image"] == {
        "width": WIDTH, "height": HEIGHT, "encoding": "rgb8", "step": WIDTH * 3,
        "frame_id": "camera_color_optical_frame", "sha256": hashlib.sha256(_image_bytes()).hexdigest(),
    }
    assert got["tf_static"] == [{"parent": "camera_link", "child": "camera_color_optical_frame", "x": 0.015,
                                 "q": [-0.5, 0.5, -0.5, 0.5]}]
    assert got["env"]["ROS_DOMAIN_ID"] == str(ros_domain_id)
    assert got["env"]["ROS_AUTOMATIC_DISCOVERY_RANGE"] == os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]

    assert outsider.returncode == 0, outsider_err
    isolated = json.loads(outsider_out.strip().splitlines()[-1])
    assert isolated["env"]["ROS_DOMAIN_ID"] == str(other_domain.domain_id) != str(ros_domain_id)
    assert "image" not in isolated and "tf_static" not in isolated, "messages leaked across ROS domains"
