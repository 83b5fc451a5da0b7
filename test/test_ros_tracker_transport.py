"""Frames on their way to the tracker process: the shared-memory ring and the proxy's use of it (no rclpy)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from handypriors_core.geometry.camera import PinholeCamera
from handypriors_core.io.frame import Frame
from handypriors_ros.shared_frames import FrameRing, FrameRingReader, SlotOverwritten
from handypriors_ros.tracker_process import SHARED_MIN_BYTES, TrackerProcess, _pack, _unpack


def _frame(width: int = 640, height: int = 480) -> Frame:
    """A frame of random images at the RealSense's size (colour uint8, depth and mask float32)."""
    generator = torch.Generator().manual_seed(0)
    camera = PinholeCamera(torch.tensor([[615.0, 0.0, 319.5], [0.0, 615.0, 239.5], [0.0, 0.0, 1.0]]), width, height)
    return Frame(index=3, stamp=1.5, rgb=torch.randint(0, 256, (height, width, 3), dtype=torch.uint8,
                                                       generator=generator),
                 camera=camera, joint_angles=torch.rand(16, generator=generator), hand2camera=torch.eye(4),
                 depth=torch.rand(height, width, generator=generator),
                 object_mask=torch.rand(height, width, generator=generator))


@pytest.fixture
def ring():
    ring = FrameRing(slot_bytes=1 << 16, slots=2)
    yield ring
    ring.close()


def test_ring_round_trip_keeps_values_dtypes_and_shapes(ring):
    reader = FrameRingReader()
    arrays = [np.arange(12, dtype=np.uint8).reshape(2, 2, 3), np.linspace(0, 1, 7, dtype=np.float32),
              np.array([[1.5, -2.0]], dtype=np.float64), np.zeros((0, 3), dtype=np.int64)]
    for _ in range(3):  # every slot, and one of them again
        out = reader.read(ring.write(arrays))
        for a, b in zip(arrays, out):
            assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    out[0][...] = 99  # copies: the reader owns them, the segment is untouched
    assert np.array_equal(reader.read(ring.write(arrays))[0], arrays[0])
    reader.close()


def test_a_frame_larger_than_a_slot_moves_to_a_larger_segment(ring):
    reader = FrameRingReader()
    small_name = ring.name
    big = np.random.default_rng(0).random((300, 300))  # 720 kB > 64 kB slots
    shared = ring.write([big])
    assert ring.name != small_name and ring.slot_bytes >= big.nbytes
    assert np.array_equal(reader.read(shared)[0], big)
    with pytest.raises(FileNotFoundError):  # the old segment is gone
        FrameRingReader().read(shared.__class__(small_name, 0, 1, ()))
    reader.close()


def test_newest_wins_a_stale_descriptor_is_refused_not_read():
    ring = FrameRing(slot_bytes=1 << 12, slots=1)
    reader = FrameRingReader()
    try:
        first = ring.write([np.full(8, 1.0)])
        second = ring.write([np.full(8, 2.0)])  # same slot: the newer frame wins
        with pytest.raises(SlotOverwritten):
            reader.read(first)
        assert reader.read(second)[0].tolist() == [2.0] * 8
    finally:
        reader.close()
        ring.close()


def test_close_unlinks_the_segment():
    ring = FrameRing(slot_bytes=1 << 12)
    shared = ring.write([np.ones(4)])
    ring.close()
    ring.close()  # idempotent
    with pytest.raises(FileNotFoundError):
        FrameRingReader().read(shared)


def test_a_frames_images_go_to_shared_memory_and_only_a_descriptor_through_the_pipe():
    frame = _frame()
    arrays: list[np.ndarray] = []
    packed = _pack((frame,), arrays)
    assert sorted(a.nbytes for a in arrays) == [640 * 480 * 3, 640 * 480 * 4, 640 * 480 * 4]
    assert all(a.nbytes >= SHARED_MIN_BYTES for a in arrays)
    assert len(pickle.dumps(packed, protocol=pickle.HIGHEST_PROTOCOL)) < 8192  # was 3.4 MB
    (restored,) = _unpack(packed, [a.copy() for a in arrays])
    for name in ("rgb", "depth", "object_mask", "joint_angles", "hand2camera"):
        assert torch.equal(getattr(restored, name), getattr(frame, name)), name
    assert restored.camera.width == 640


def test_tracker_process_receives_the_frame_through_shared_memory():
    proxy = TrackerProcess()
    try:
        frame = _frame()
        for _ in range(3):  # both slots and a reused one
            echoed = proxy._call("echo", frame)
            for name in ("rgb", "depth", "object_mask", "joint_angles"):
                assert torch.equal(getattr(echoed, name), getattr(frame, name)), name
        assert proxy._frames is not None and proxy._frames.name
        name = proxy._frames.name
    finally:
        proxy.close()
    with pytest.raises(FileNotFoundError):  # closing the proxy unlinks the segment
        FrameRingReader()._attach(name)


def test_the_warm_up_sets_up_the_shared_memory_before_the_first_frame():
    """Creating the ring (and Python's resource tracker process for it) cost the first camera frame otherwise."""
    from handypriors_ros.tracker_process import _TrackerProxy

    calls = []

    class Recording(_TrackerProxy):
        def _call(self, method, *args):
            calls.append((method, args))
            return {"warning": "", "initialized": False, "status": "initialising"} if method == "build" else None

    Recording().build("", "model.obj", 1.0, None, "none", warm_up=True)
    arrays: list[np.ndarray] = []
    _pack([args for method, args in calls if method == "echo"], arrays)
    assert arrays, "the warm-up sends nothing through shared memory"


def _wire_frame(width: int = 640, height: int = 480):
    """A frame as the node builds it for the tracker process: colour and 16UC1 depth as received (WireImage views
    of the CDR bytes), no checks; and the tensors the node used to decode them into."""
    from rclpy.serialization import serialize_message

    from handypriors_ros import cdr
    from handypriors_ros import conversions as cv
    from handypriors_ros.frame_sync import _unchecked_frame

    rng = np.random.default_rng(1)
    depth_mm = rng.integers(300, 1500, (height, width)).astype(np.uint16)
    depth_mm[::5, ::3] = 0  # holes
    colour = cdr.parse_image(serialize_message(cv.rgb_to_image(rng.integers(0, 256, (height, width, 3)).astype(
        np.uint8), 5, "cam")))
    depth = cdr.parse_image(serialize_message(cv.array_to_image(depth_mm, "16UC1", 5, "cam")))
    base = _frame(width, height)
    fields = {"index": 3, "stamp": 1.5, "rgb": cv.image_to_wire(colour, "colour"), "camera": base.camera,
              "depth": cv.image_to_wire(depth, "depth"), "joint_angles": base.joint_angles,
              "hand2camera": base.hand2camera, "joint_names": base.joint_names}
    decoded = {"rgb": torch.from_numpy(cv.image_to_rgb(colour)), "depth": torch.from_numpy(cv.image_to_depth(depth))}
    return _unchecked_frame(fields), decoded


def test_images_as_received_cross_undecoded_and_the_tracker_process_decodes_them():
    frame, decoded = _wire_frame()
    arrays: list[np.ndarray] = []
    packed = _pack((frame,), arrays)
    # colour as its bytes, depth as uint16 millimetres: 1.5 MB to write instead of 2.1 MB
    assert sorted((a.dtype.str, a.nbytes) for a in arrays) == [("<u2", 640 * 480 * 2), ("|u1", 640 * 480 * 3)]
    (restored,) = _unpack(packed, [a.copy() for a in arrays])
    assert torch.equal(restored.rgb, decoded["rgb"])
    assert restored.depth.dtype == torch.float32 and torch.equal(restored.depth.isnan(), decoded["depth"].isnan())
    assert torch.equal(restored.depth.nan_to_num(), decoded["depth"].nan_to_num())
    proxy = TrackerProcess()  # and through a real tracker process, which rebuilds the frame with its checks
    try:
        for _ in range(3):
            echoed = proxy._call("echo", frame)
            assert isinstance(echoed, Frame) and torch.equal(echoed.rgb, decoded["rgb"])
            assert torch.equal(echoed.depth.nan_to_num(-1.0), decoded["depth"].nan_to_num(-1.0))
    finally:
        proxy.close()


def test_millimetre_depth_decodes_every_value_as_depth_to_metres():
    from handypriors_core.io.image_encoding import depth_to_metres
    from handypriors_ros.conversions import WireImage

    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    for encoding in ("16UC1", "mono16"):
        table = WireImage(every, encoding, "depth").decoded()
        assert table.dtype == np.float32 and table.shape == (256, 256)
        assert np.array_equal(table, depth_to_metres(every, encoding), equal_nan=True)
        assert np.isnan(table[0, 0]) and np.all(table.reshape(-1)[1:] > 0)
    swapped = every.astype(">u2")  # (the other byte order: the plain conversion, same values)
    assert np.array_equal(WireImage(swapped, "16UC1", "depth").decoded(), depth_to_metres(every, "16UC1"),
                          equal_nan=True)


def test_a_millimetre_depth_frame_is_rebuilt_with_every_check_but_the_depth_value_scan():
    from handypriors_core.errors import InvalidValueError, ShapeError
    from handypriors_ros.conversions import WireImage
    from handypriors_ros.frame_sync import _unchecked_frame

    frame, decoded = _wire_frame(64, 48)
    arrays: list[np.ndarray] = []
    (restored,) = _unpack(_pack((frame,), arrays), [a.copy() for a in arrays])
    checked = Frame(**{f: getattr(restored, f) for f in ("index", "stamp", "rgb", "camera", "joint_angles",
                                                          "hand2camera", "depth", "joint_names")})
    assert torch.equal(restored.depth.nan_to_num(-1.0), checked.depth.nan_to_num(-1.0))
    assert torch.equal(restored.depth.nan_to_num(-1.0), decoded["depth"].nan_to_num(-1.0))
    fields = {f: getattr(frame, f) for f in ("index", "stamp", "rgb", "camera", "joint_angles", "hand2camera",
                                             "depth", "joint_names")}
    bad_pose = dict(fields, hand2camera=frame.hand2camera * 2.0)  # not rigid: still refused
    with pytest.raises(InvalidValueError):
        _unpack(_pack((_unchecked_frame(bad_pose),)))
    small = dict(fields, depth=WireImage(np.ones((10, 10), np.uint16), "16UC1", "depth"))  # wrong size: refused
    with pytest.raises(ShapeError):
        _unpack(_pack((_unchecked_frame(small),)))
    metres = np.ones((48, 64), np.float32)
    metres[3, 4] = -1.0  # a depth already in metres can hold bad values: its scan stays
    with pytest.raises(InvalidValueError, match="depth"):
        _unpack(_pack((_unchecked_frame(dict(fields, depth=torch.from_numpy(metres))),)))


def test_track_replies_carry_the_tracker_process_cpu_per_part(monkeypatch):
    """The tracker process reports its CPU per ``track``: receiving the frame, the step, the previous reply."""
    import os
    import threading
    import time

    from handypriors_ros import tracker_process as tp

    class BusyTracker:
        initialized, status = True, "tracking"

        def track(self, frame):
            end = time.process_time() + 0.02  # 20 ms of CPU
            while time.process_time() < end:
                pass
            return frame.index

    monkeypatch.setattr(tp._Server, "build", lambda self, *args: (setattr(self, "tracker", BusyTracker()),
                                                                   self._state())[1])
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    with (open(requests_w, "wb") as requests, open(replies_r, "rb") as replies,
          open(requests_r, "rb") as server_in, open(replies_w, "wb") as server_out):
        server = threading.Thread(target=tp.serve, args=(server_in, server_out))
        server.start()
        ring = FrameRing()
        try:
            tp._write(requests, ("build", (), None))
            assert tp._read(replies)[1]["cpu_ms"] == {}
            frame, _ = _wire_frame()
            states = []
            for _ in range(2):
                arrays: list[np.ndarray] = []
                packed = _pack((frame,), arrays)
                tp._write(requests, ("track", packed, ring.write(arrays, [])))
                kind, (index, state) = tp._read(replies)
                assert kind == "ok" and index == 3
                states.append(state["cpu_ms"])
        finally:
            requests.close()
            server.join(10)
            ring.close()
    assert set(states[0]) == {"receive", "step"} and set(states[1]) == {"receive", "step", "reply"}
    for cpu in states:
        assert 19.0 <= cpu["step"] < 200.0  # (the process's CPU: this test's other threads are idle)
        assert 0.0 < cpu["receive"] < cpu["step"]
    assert 0.0 <= states[1]["reply"] < states[1]["step"]
