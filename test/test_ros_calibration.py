"""allegro_tracker and the hand calibration (issue 18): calibration_file loaded at start and published on
~/hand_camera_correction, ~/joint_offsets and /diagnostics (WARN: recalibration needed); a wrong file is rejected
at start (the process stops with a clear message) and on live updates."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from test_ros_tracker_node import INITIAL, REPO, T0, harness_factory, mesh, params  # noqa: F401 - fixtures

from handypriors_core.geometry.rotations import axis_angle_to_matrix
from handypriors_core.geometry.transforms import make_transform
from handypriors_core.io.calibration_file import HandCalibration, save_calibration
from handypriors_ros import conversions as cv
from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

JOINTS = [f"joint_{i}.0" for i in range(16)]


def _calibration_file(path, translation_mm: float) -> tuple:
    correction = make_transform(axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(0.5)], dtype=torch.float64)),
                                torch.tensor([translation_mm * 1e-3, 0.0, 0.0], dtype=torch.float64))
    offsets = torch.linspace(-0.02, 0.02, 16, dtype=torch.float64)
    save_calibration(HandCalibration(correction, offsets, JOINTS), path)
    return correction, offsets


def test_calibration_file_is_applied_published_and_checked(harness_factory, mesh, tmp_path):  # noqa: F811
    from diagnostic_msgs.msg import DiagnosticStatus
    from geometry_msgs.msg import TransformStamped
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState

    from handypriors_ros.qos import OUTPUT_QOS

    good = tmp_path / "good.yaml"
    correction, offsets = _calibration_file(good, translation_mm=1.0)
    h = harness_factory(params(object_mesh=str(mesh), initial_pose=INITIAL, calibration_file=str(good)))
    got = {"correction": [], "offsets": [], "calibration": []}
    h.node.create_subscription(TransformStamped, "/allegro_tracker/hand_camera_correction",
                               got["correction"].append, OUTPUT_QOS)
    h.node.create_subscription(JointState, "/allegro_tracker/joint_offsets", got["offsets"].append, OUTPUT_QOS)
    h.publish_static()
    h.send(T0)
    assert h.spin_until(lambda: T0 in h.tf_stamps()), h.status()[1]
    assert h.tracker._tracker.calibration is not None
    assert h.spin_until(lambda: bool(got["correction"]) and bool(got["offsets"]))
    T = cv.transform_to_matrix(got["correction"][-1])
    assert torch.allclose(T.double(), correction, atol=1e-6)
    assert got["correction"][-1].header.frame_id == "hand_root"
    assert got["correction"][-1].child_frame_id == "hand_root_corrected"
    assert list(got["offsets"][-1].name) == JOINTS
    assert torch.allclose(torch.tensor(list(got["offsets"][-1].position), dtype=torch.float64), offsets, atol=1e-9)

    def calibration_status():
        for msg in reversed(h.got["diagnostics"]):
            for status in msg.status:
                if status.name.endswith("hand calibration"):
                    return status
        return None

    assert h.spin_until(lambda: calibration_status() is not None)
    status = calibration_status()
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK, status.message  # 1 mm / 0.5 deg / 1.1 deg: within the thresholds
    assert abs(float(values["hand_camera_translation_mm"]) - 1.0) < 1e-3 and values["calibration_file"] == str(good)
    # a file beyond the thresholds: the status warns that the robot needs recalibration
    far = tmp_path / "far.yaml"
    _calibration_file(far, translation_mm=6.0)
    [result] = h.tracker.set_parameters([Parameter("calibration_file", value=str(far))])
    assert result.successful, result.reason
    assert h.spin_until(lambda: calibration_status() is not None and calibration_status().level
                        == DiagnosticStatus.WARN)
    assert "recalibration needed" in calibration_status().message and "6.0 mm" in calibration_status().message
    # a wrong file is rejected on a live update, naming the file and the problem
    bad = tmp_path / "bad.yaml"
    bad.write_text("hand_camera_correction: {translation: [0, 0, 0], rotation_xyzw: [0, 0, 0, 1]}\n")
    [result] = h.tracker.set_parameters([Parameter("calibration_file", value=str(bad))])
    assert not result.successful and "joint_offsets" in result.reason and str(bad) in result.reason


def test_wrong_calibration_file_stops_the_node_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hand_camera_correction: {translation: [0.2, 0, 0], rotation_xyzw: [0, 0, 0, 1]}\n"
                   "joint_offsets: {joint_0.0: 0.0}\n")
    with reserve_domain_id() as domain:
        env = ros_environment(domain_id=domain.domain_id, log_dir=tmp_path / "log", interpreter=sys.executable)
        result = subprocess.run(
            [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args", "--params-file",
             str(REPO / "config" / "allegro_tracking.yaml"), "-p", f"calibration_file:={bad}"],
            check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "cannot start" in output and str(bad) in output and "implausible" in output
    assert "Traceback" not in output


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
