"""Fuzzing the live ``allegro_tracker``: >= 10,000 hostile messages on every subscription, mixed with valid frames.

The node runs as its own process (``python -m handypriors_ros.allegro_tracker``) on a private localhost ROS domain,
tracking a generated sequence (a box carried by the Allegro hand, 160x120, :func:`render_sequence`). A seeded
fuzzer publishes, for ``FUZZ_SECONDS`` (default 45 s; ``HANDYPRIORS_FUZZ_SECONDS`` overrides) and at least
``MIN_MESSAGES`` messages:

- images with every encoding name (valid and invented), width/height/step inconsistent with the data, zero and
  huge declared sizes (up to 8192x8192), the big-endian flag, truncated data; depth 16UC1 / 32FC1 with NaN, inf,
  negative values and all zeros;
- CameraInfo with zero / NaN / inf / negative focal lengths, unknown distortion models, D of the wrong length, a
  size other than the image's;
- JointState with random and duplicated names, name/position lengths that differ, NaN / inf / huge values;
- /tf and /tf_static with NaN and non-unit quaternions, cycles, reparented frames (the real ones included),
  stamps zero, in the future and going backwards;
- ~/initial_pose in unknown frames or with NaN; ~/object_mask of the wrong size or encoding;

and every ``VALID_EVERY`` messages one valid frame of the sequence. Then the fuzzing stops, the valid static
transforms are published again (as a restarted static publisher would) and valid frames resume.

Expected (and asserted): the process never exits; no traceback or "internal error" in its output; its RSS stays
under ``RSS_BOUND_MB``; within ``RECOVER_FRAMES`` valid frames it reports ``tracking`` again and its pose is
within ``RECOVERED_ADDS_M`` of the ground truth; /diagnostics counted the errors by kind (``errors_<kind>``; the
node runs with ``mask_source`` none, so masks are received and buffered but never read: no mask errors).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_ros_tracker_integration import CAMERA_FRAME, render_sequence

from handypriors_ros.ros_environment import reserve_domain_id, ros_environment

REPO = Path(__file__).resolve().parents[1]
FUZZ_SECONDS = float(os.environ.get("HANDYPRIORS_FUZZ_SECONDS", "45"))
MIN_MESSAGES = int(os.environ.get("HANDYPRIORS_FUZZ_MIN_MESSAGES", "10000"))
VALID_EVERY = 40
SEED = 1616
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 33_333_333
RSS_BOUND_MB = 1000.0  # measured: about 580 MB after warm-up, at most 720 MB while fuzzed
RECOVER_FRAMES = 10
RECOVERED_ADDS_M = 0.003
TOPICS = {"color": "/camera/camera/color/image_raw", "color_info": "/camera/camera/color/camera_info",
          "depth": "/camera/camera/aligned_depth_to_color/image_raw",
          "depth_info": "/camera/camera/aligned_depth_to_color/camera_info", "joints": "/joint_states",
          "mask": "/allegro_tracker/object_mask", "initial_pose": "/allegro_tracker/initial_pose"}
ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1", "8UC3", "8UC1", "16SC1",
             "32SC1", "64FC1", "bayer_rggb8", "yuv422", "yuv422_yuy2", "nv21", "RGB8", "", "rgb16", "jpeg",
             "\u00e9ncodage", "x" * 300]
KINDS = ["image", "depth", "camera_info", "joint_states", "tf", "tf_static", "initial_pose", "mask"]


def _rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return math.nan
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else math.nan


class Fuzzer:
    """Seeded hostile messages for every subscription of the tracker, and the valid frames of a sequence."""

    def __init__(self, node, sequence, rng: np.random.Generator) -> None:
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from tf2_msgs.msg import TFMessage

        from handypriors_ros.qos import RELIABLE_SUBSCRIBER_QOS, SENSOR_PUBLISHER_QOS, TF_QOS, TF_STATIC_QOS

        self.node, self.seq, self.rng = node, sequence, rng
        pub = node.create_publisher
        self.pub = {"color": pub(Image, TOPICS["color"], SENSOR_PUBLISHER_QOS),
                    "color_info": pub(CameraInfo, TOPICS["color_info"], SENSOR_PUBLISHER_QOS),
                    "depth": pub(Image, TOPICS["depth"], SENSOR_PUBLISHER_QOS),
                    "depth_info": pub(CameraInfo, TOPICS["depth_info"], SENSOR_PUBLISHER_QOS),
                    "joints": pub(JointState, TOPICS["joints"], SENSOR_PUBLISHER_QOS),
                    "mask": pub(Image, TOPICS["mask"], SENSOR_PUBLISHER_QOS),
                    "initial_pose": pub(PoseStamped, TOPICS["initial_pose"], RELIABLE_SUBSCRIBER_QOS),
                    "tf": pub(TFMessage, "/tf", TF_QOS), "tf_static": pub(TFMessage, "/tf_static", TF_STATIC_QOS)}
        self.types = {"Image": Image, "CameraInfo": CameraInfo, "JointState": JointState, "TFMessage": TFMessage,
                      "PoseStamped": PoseStamped}
        self.valid_index = 0  # valid frames sent
        self.sent = {kind: 0 for kind in KINDS}
        self.sent["valid"] = 0

    # -- valid data --------------------------------------------------------------------------------------
    def frame_of(self, k: int) -> int:
        """Sequence frame of the k-th valid frame: forwards and backwards (continuous motion)."""
        n = len(self.seq)
        period = 2 * (n - 1)
        j = k % period
        return j if j < n else period - j

    def stamp(self, k: int) -> int:
        return T0_NS + k * PERIOD_NS

    def send_valid(self) -> int:
        """Publish the next valid frame (joint states, /tf, camera infos, depth, image); returns its index."""
        from sensor_msgs.msg import JointState
        from tf2_msgs.msg import TFMessage

        from handypriors_ros import conversions as cv

        k = self.valid_index
        self.valid_index += 1
        frame = self.seq[self.frame_of(k)]
        stamp = self.stamp(k)
        names = list(self.seq.joint_names)
        self.pub["joints"].publish(JointState(header=cv.make_header(stamp), name=names,
                                              position=frame.joint_angles.double().tolist()))
        hand = cv.matrix_to_transform_stamped(frame.hand2camera.double(), CAMERA_FRAME, "hand_root", stamp)
        self.pub["tf"].publish(TFMessage(transforms=[hand]))
        info = cv.camera_to_camera_info(frame.camera, stamp, CAMERA_FRAME)
        self.pub["color_info"].publish(info)
        self.pub["depth_info"].publish(info)
        depth = frame.depth.numpy()
        self.pub["depth"].publish(cv.depth_to_image(np.nan_to_num(depth, nan=0.0), stamp, CAMERA_FRAME))
        self.pub["color"].publish(cv.rgb_to_image(frame.rgb.numpy(), stamp, CAMERA_FRAME))
        self.sent["valid"] += 1
        return k

    def send_static(self) -> None:
        """The valid static transforms (none are needed: a camera mount frame for the tree)."""
        from tf2_msgs.msg import TFMessage

        from handypriors_ros import conversions as cv

        mount = cv.matrix_to_transform_stamped(np.eye(4), "camera_link", CAMERA_FRAME, 0)
        self.pub["tf_static"].publish(TFMessage(transforms=[mount]))

    # -- hostile data ------------------------------------------------------------------------------------
    def _bad_stamp(self) -> int:
        now = self.stamp(self.valid_index)
        choice = self.rng.integers(6)
        return [0, now + 10**12, now - 10**10, now - PERIOD_NS, now + PERIOD_NS // 2,
                int(self.rng.integers(0, 2**62))][choice]

    def _header(self, frame_id: str | None = None):
        from handypriors_ros import conversions as cv

        stamp = self._bad_stamp()
        stamp = max(0, min(stamp, (2**31 - 1) * 10**9))
        frames = [CAMERA_FRAME, "", "/" + CAMERA_FRAME, "unknown_frame", "hand_root", "x" * 200]
        return cv.make_header(stamp, frame_id if frame_id is not None else frames[self.rng.integers(len(frames))])

    def _number(self) -> float:
        """A value no sensor means: NaN, +-inf, huge, or (for quaternions) zero / tiny."""
        r = self.rng
        return float(r.choice([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, 1e-300, float(r.normal()) * 1e6]))

    def _image(self, depth: bool = False):
        r = self.rng
        msg = self.types["Image"]()
        msg.header = self._header()
        sizes = [0, 1, 2, 48, 64, 120, 160, 4096, 8192]
        w, h = int(r.choice(sizes)), int(r.choice(sizes))
        if r.random() < 0.5:  # the right size, so that later checks run
            w, h = 160, 120
        encoding = str(r.choice(["16UC1", "32FC1", "mono16"] if depth and r.random() < 0.7 else ENCODINGS))
        msg.width, msg.height, msg.encoding = w, h, encoding
        msg.is_bigendian = int(r.random() < 0.2)
        channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "16UC1": 2, "mono16": 2, "32FC1": 4}.get(encoding, 1)
        step = w * channels
        msg.step = int(r.choice([step, 0, step + 1, max(0, step - 1), 2**31 - 1, int(r.integers(0, 10**6))]))
        nbytes = min(h * msg.step, 200_000) if r.random() < 0.6 else int(r.integers(0, 5000))
        if depth and encoding == "32FC1" and r.random() < 0.7:
            values = r.choice([math.nan, math.inf, -math.inf, -1.0, 0.0, 0.4], size=max(0, nbytes // 4))
            data = values.astype(np.float32).tobytes()
        elif depth and encoding in ("16UC1", "mono16") and r.random() < 0.5:
            data = np.zeros(max(0, nbytes // 2), np.uint16).tobytes()
        else:
            data = r.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        msg.data = data
        return msg

    def _camera_info(self):
        r = self.rng
        msg = self.types["CameraInfo"]()
        msg.header = self._header()
        msg.width, msg.height = int(r.choice([0, 160, 161, 8192])), int(r.choice([0, 120, 119, 8192]))
        k = [200.0, 0.0, 79.5, 0.0, 200.0, 59.5, 0.0, 0.0, 1.0]
        for index in r.choice(9, size=int(r.integers(1, 4)), replace=False):
            k[int(index)] = self._number()
        msg.k = k
        msg.p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
        msg.distortion_model = str(r.choice(["plumb_bob", "rational_polynomial", "equidistant", "fisheye", "",
                                             "unknown_model", "PLUMB_BOB"]))
        msg.d = [self._number() if r.random() < 0.3 else 0.0 for _ in range(int(r.choice([0, 1, 4, 5, 8, 14, 50])))]
        return msg

    def _joint_state(self):
        r = self.rng
        msg = self.types["JointState"]()
        msg.header = self._header()
        real = list(self.seq.joint_names)
        mode = r.integers(5)
        if mode == 0:
            names = [f"j{int(r.integers(1000))}" for _ in range(int(r.integers(0, 20)))]
        elif mode == 1:
            names = [real[0]] * 16
        elif mode == 2:
            names = real + real[:3]
        else:
            names = list(real)
        count = len(names) if r.random() < 0.5 else int(r.integers(0, 40))
        msg.name = names
        msg.position = [self._number() if r.random() < 0.5 else math.nan for _ in range(count)]
        if r.random() < 0.3:
            msg.velocity = [self._number() for _ in range(int(r.integers(0, 20)))]
        return msg

    def _transforms(self, static: bool):
        from geometry_msgs.msg import TransformStamped

        r = self.rng
        frames = [CAMERA_FRAME, "hand_root", "camera_link", "a", "b", "c", "", "world"]
        out = []
        for _ in range(int(r.integers(1, 4))):
            t = TransformStamped()
            t.header = self._header(str(r.choice(frames)))
            t.child_frame_id = str(r.choice(frames))
            q = [self._number() if r.random() < 0.4 else float(r.normal()) for _ in range(4)]  # never unit
            if r.random() < 0.3:
                q = [0.0, 0.0, 0.0, 0.0]
            elif r.random() < 0.15:  # a proper rotation: a frame reparented (the real ones too) or a loop
                q = [0.0, 0.0, 0.0, 1.0]
            t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = q
            t.transform.translation.x = self._number() if r.random() < 0.3 else float(r.normal())
            out.append(t)
        if r.random() < 0.2:  # a cycle a -> b -> a in one message
            for parent, child in (("a", "b"), ("b", "a")):
                t = TransformStamped()
                t.header = self._header(parent)
                t.child_frame_id = child
                t.transform.rotation.w = 1.0
                out.append(t)
        return self.types["TFMessage"](transforms=out)

    def _initial_pose(self):
        r = self.rng
        msg = self.types["PoseStamped"]()
        # Frames that no fuzzed transform ever names. Not "" (the node reads it as the camera frame) and not "world"
        # (a fuzzed /tf can make it real): a finite pose in a real frame is a valid command the node must obey.
        msg.header = self._header(str(r.choice(["unknown_frame", "map", "odom"])) if r.random() < 0.6 else
                                  CAMERA_FRAME)
        if msg.header.frame_id == CAMERA_FRAME:  # a known frame: then the pose itself is not finite / not a rotation
            msg.pose.position.x = math.nan if r.random() < 0.5 else 0.1
            msg.pose.orientation.w = float(r.choice([math.nan, 0.0, math.inf]))
        else:
            msg.pose.position.z = 0.3
            msg.pose.orientation.w = 1.0
        return msg

    def _mask(self):
        msg = self._image()
        if self.rng.random() < 0.5:
            msg.encoding = str(self.rng.choice(["mono8", "8UC1", "rgb8", "32FC1", "bogus"]))
        return msg

    def send_hostile(self) -> str:
        r = self.rng
        kind = str(r.choice(KINDS, p=[0.22, 0.14, 0.14, 0.16, 0.12, 0.06, 0.04, 0.12]))
        if kind == "image":
            self.pub["color"].publish(self._image())
        elif kind == "depth":
            self.pub["depth"].publish(self._image(depth=True))
        elif kind == "camera_info":
            self.pub["color_info" if r.random() < 0.6 else "depth_info"].publish(self._camera_info())
        elif kind == "joint_states":
            self.pub["joints"].publish(self._joint_state())
        elif kind in ("tf", "tf_static"):
            self.pub[kind].publish(self._transforms(static=kind == "tf_static"))
        elif kind == "initial_pose":
            self.pub["initial_pose"].publish(self._initial_pose())
        else:
            self.pub["mask"].publish(self._mask())
        self.sent[kind] += 1
        return kind


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    from handypriors_core.io import DevSequence, load_ground_truth

    folder = render_sequence(tmp_path_factory.mktemp("fuzz") / "carry", frames=10)
    return DevSequence(folder), load_ground_truth(folder), folder


def test_tracker_survives_fuzzed_input_and_recovers(sequence, tmp_path):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from handypriors_core.geometry.transforms import pose_from_transform
    from handypriors_core.metrics.pose_errors import add_s
    from handypriors_core.models import RigidObject
    from handypriors_ros import conversions as cv
    from handypriors_ros.qos import RELIABLE_SUBSCRIBER_QOS

    seq, truth, folder = sequence
    initial = truth.object2camera[0]
    position, quaternion = (v.tolist() for v in pose_from_transform(initial.double()))
    log = tmp_path / "tracker.log"
    with reserve_domain_id() as domain, log.open("w") as log_file:
        env = ros_environment(domain_id=domain.domain_id, log_dir=tmp_path / "ros_log", interpreter=sys.executable)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        params = {"object_mesh": str(folder / "object" / "model.obj"), "tracking.mode": "filter",
                  "initial_pose": "[" + ",".join(f"{v:.12g}" for v in [*position, *quaternion]) + "]",
                  "diagnostics_period": "0.5", "torch_threads": "1", "global_search": "false",
                  "camera_frame": CAMERA_FRAME}
        args = [sys.executable, "-m", "handypriors_ros.allegro_tracker", "--ros-args"]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        node = Node("fuzzer", context=context)
        poses, diagnostics = {}, []
        deep = type(RELIABLE_SUBSCRIBER_QOS)(depth=200, reliability=RELIABLE_SUBSCRIBER_QOS.reliability)
        node.create_subscription(PoseWithCovarianceStamped, "/allegro_tracker/object_pose",
                                 lambda m: poses.__setitem__(cv.stamp_ns(m), m), deep)
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, deep)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        fuzzer = Fuzzer(node, seq, np.random.default_rng(SEED))

        def spin_until(condition, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                if condition():
                    return True
                executor.spin_once(timeout_sec=0.02)
            return condition()

        def latest(key: str) -> str:
            for msg in reversed(diagnostics):
                for kv in msg.status[0].values:
                    if kv.key == key:
                        return kv.value
            return ""

        rss = []
        try:
            assert spin_until(lambda: node.count_subscribers(TOPICS["color"]) > 0 and diagnostics, 120), \
                log.read_text()[-3000:]
            fuzzer.send_static()
            # warm: valid frames until the first poses come back
            for _ in range(4):
                k = fuzzer.send_valid()
                spin_until(lambda k=k: fuzzer.stamp(k) in poses, 20)
            assert poses, f"no pose before fuzzing\n{log.read_text()[-3000:]}"
            rss_warm = _rss_mb(process.pid)
            # fuzz
            start = time.monotonic()
            messages = 0
            next_rss = start
            while (time.monotonic() - start < FUZZ_SECONDS or messages < MIN_MESSAGES) and process.poll() is None:
                fuzzer.send_hostile()
                messages += 1
                if messages % VALID_EVERY == 0:
                    fuzzer.send_valid()
                    executor.spin_once(timeout_sec=0.0)
                if time.monotonic() >= next_rss:
                    rss.append(_rss_mb(process.pid))
                    next_rss += 1.0
                    executor.spin_once(timeout_sec=0.0)
            fuzz_seconds = time.monotonic() - start
            assert process.poll() is None, f"the node exited ({process.returncode})\n{log.read_text()[-4000:]}"
            # recovery: statics again, then valid frames one at a time
            fuzzer.send_static()
            spin_until(lambda: False, 1.0)
            recovered_at, errors = None, []
            points = RigidObject.from_mesh(folder / "object" / "model.obj").samples.double()
            for attempt in range(RECOVER_FRAMES + 10):
                k = fuzzer.send_valid()
                stamp = fuzzer.stamp(k)
                spin_until(lambda s=stamp: s in poses, 10)
                rss.append(_rss_mb(process.pid))
                if stamp not in poses:
                    continue
                T = cv.pose_to_matrix(poses[stamp]).double()
                gt = truth.object2camera[fuzzer.frame_of(k)].double()
                errors.append(float(add_s(points, T[None], gt[None])[0]))
                spin_until(lambda: False, 0.6)  # a diagnostics message after this frame
                if latest("node_state") == "tracking" and errors[-1] < RECOVERED_ADDS_M and recovered_at is None:
                    recovered_at = attempt + 1
                    break
            spin_until(lambda: False, 1.2)
            final = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
            counts = {k: v for k, v in final.items() if k.startswith("errors_")}
            queues = {k: int(v) for k, v in final.items() if k.startswith("size_")}
        finally:
            alive = process.poll() is None
            if alive:
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            executor.shutdown(timeout_sec=0.0)
            node.destroy_node()
            rclpy.try_shutdown(context=context)
    output = log.read_text()
    summary = (f"{messages} hostile messages in {fuzz_seconds:.0f} s ({fuzzer.sent}); queues {queues}; RSS warm "
               f"{rss_warm:.0f} MB, "
               f"max {max(rss):.0f} MB, last {rss[-1]:.0f} MB; recovered after {recovered_at} frames, ADD-S "
               f"{[round(100 * e, 3) for e in errors]} cm; error counts {counts}")
    print("\n" + summary)
    assert alive, f"the node died: {summary}\n{output[-4000:]}"
    assert messages >= MIN_MESSAGES and all(fuzzer.sent[k] > 0 for k in KINDS), summary
    assert "Traceback" not in output and "internal error" not in output, output[-6000:]
    assert max(rss) < RSS_BOUND_MB, summary
    assert recovered_at is not None and recovered_at <= RECOVER_FRAMES, f"{summary}\n{output[-3000:]}"
    for kind in ("image", "depth", "camera_info", "joint_states", "tf", "initial_pose"):  # (masks: not read with
        assert int(counts.get(f"errors_{kind}", 0)) > 0, (kind, counts)  # mask_source none, only buffered)
    assert int(counts["errors_total"]) == sum(int(v) for k, v in counts.items() if k != "errors_total")
    # every queue stayed bounded under hostile stamps and frame names (bounds by construction, see
    # bench/bench_sustained_load.py: 30-message stamp buffers, 2 s of joint history, 10 s of TF per edge)
    assert queues["size_mailbox"] <= 1 and queues["size_depth"] <= 30 and queues["size_masks"] <= 30, queues
    assert queues["size_joint_samples"] <= 16 * 200 and queues["size_error_log"] <= 257, queues
    assert queues["size_tf_frames"] <= 10 and queues["size_tf_samples"] <= 2000, queues
