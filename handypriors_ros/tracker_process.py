"""The node's tracker in a process of its own: the compute never holds the interpreter lock of the ROS callbacks.

Measured (``docs/node_runtime.md``): in one process, the tracker's Python work and rclpy's executor take turns on
one interpreter lock, so joint states reach their buffer hundreds of milliseconds late at robot rates; making the
executor get the lock sooner (a short ``sys.setswitchinterval``) slows the tracker several times over on a busy
machine instead. Here the :class:`~handypriors_core.estimation.tracker.ObjectTracker` lives in a child interpreter
(``python -m handypriors_ros.tracker_process``) and the ROS process keeps only intake, synchronisation and
publishing.

Protocol: length-prefixed pickles over the child's stdin / stdout (``(method, args, shared)`` -> ``("ok", value)``
or ``("error", exception)``). Tensors cross as numpy arrays; those of at least ``SHARED_MIN_BYTES`` (a frame's
colour, depth and mask) cross through shared memory instead (:mod:`.shared_frames`: the pipe carries ``shared``,
their descriptor; measured in ``docs/node_runtime.md``). The child starts its own session (so the terminal's
Ctrl-C to the node's process group does not reach it), ignores SIGINT / SIGTERM, and ends when its stdin closes
(the node stopped or died). No rclpy in either half.

    proxy = TrackerProcess()
    info = proxy.build(hand_urdf, mesh, 1.0, settings, "none", warm_up=True)
    proxy.initialize(pose); estimate = proxy.track(frame); proxy.close()

The node's worker overlaps its own work with the child's step: ``proxy.start_track(proxy.pack_track(frame))``
sends a frame and returns; ``proxy.reply_fileno()`` becomes readable when its estimate is there
(``proxy.finish_track()``); meanwhile the next frame is assembled and packed (its images written into a
shared-memory slot the frame in flight does not use). Other calls wait for ``finish_track``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from handypriors_core.checks import check_shape
from handypriors_core.errors import HandyPriorsError, InvalidValueError
from handypriors_core.io.frame import Frame

from .conversions.images import MILLIMETRE_DEPTH_ENCODINGS, WireImage
from .shared_frames import FrameRing, FrameRingReader

__all__ = ["SHARED_MIN_BYTES", "InProcessTracker", "TrackerProcess", "TrackerProcessError"]

_HEADER = struct.Struct("<Q")

#: Tensors of at least this many bytes go to the tracker process through shared memory, smaller ones in the pipe.
SHARED_MIN_BYTES = 64 * 1024


class TrackerProcessError(HandyPriorsError):
    """The tracker process failed or ended (the message says how); the node reports it and starts a new one."""


# -- tensors <-> numpy, through dataclasses, dicts and sequences ---------------------------------------------------
class _Tensor:
    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class _Shared:
    """Stands for the ``index``-th array of the call's shared-memory write."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _pack(value: Any, shared: list[np.ndarray] | None = None) -> Any:
    """``value`` with tensors as numpy arrays; with ``shared``, large ones are appended to it and left as
    :class:`_Shared` placeholders."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, torch.Tensor):
        return _pack_array(value.detach().cpu().numpy(), shared)
    if isinstance(value, WireImage):  # (the pixels as received; decoded into a tensor by _unpack)
        return (_Wire, _pack_array(value.values, shared), value.encoding, value.kind)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (_Dataclass, type(value), {f.name: _pack(getattr(value, f.name), shared)
                                          for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {k: _pack(v, shared) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, _PLAIN) for v in value):  # (e.g. a frame's joint names)
            return value
        return type(value)(_pack(v, shared) for v in value)
    return value


_PLAIN = (str, int, float, bool, bytes, type(None))


@dataclasses.dataclass
class CalibrationSnapshot:
    """What the node publishes of the tracker's hand calibrator (``handypriors_ros.calibration_outputs`` reads it
    as it reads a :class:`~handypriors_core.estimation.calibration.HandCalibrator`)."""

    state: Any  # .correction (4, 4), .offsets (J,)
    covariance: torch.Tensor
    joint_names: tuple[str, ...]
    summary_values: dict[str, Any]
    warning: Any

    @classmethod
    def of(cls, calibrator: Any) -> CalibrationSnapshot:
        state = _CalibrationState(calibrator.state.correction.detach().cpu(), calibrator.state.offsets.detach().cpu())
        return cls(state, calibrator.covariance.detach().cpu(), tuple(calibrator.joint_names),
                   dict(calibrator.summary()), calibrator.needs_recalibration())

    def summary(self) -> dict[str, Any]:
        return self.summary_values

    def needs_recalibration(self) -> Any:
        return self.warning


@dataclasses.dataclass
class _CalibrationState:
    correction: torch.Tensor
    offsets: torch.Tensor


def _pack_array(array: np.ndarray, shared: list[np.ndarray] | None) -> _Tensor | _Shared:
    if shared is not None and array.nbytes >= SHARED_MIN_BYTES:
        shared.append(array)
        return _Shared(len(shared) - 1)
    return _Tensor(array)


class _Dataclass:
    """Marker of a packed dataclass ``(_Dataclass, cls, fields)``."""


class _Wire:
    """Marker of a packed :class:`~handypriors_ros.conversions.WireImage` ``(_Wire, pixels, encoding, kind)``."""


def _unpack(value: Any, shared: Sequence[np.ndarray] = ()) -> Any:
    """The inverse of :func:`_pack`; ``shared``: the arrays read from shared memory (copies, owned here)."""
    if isinstance(value, _Tensor):
        return torch.from_numpy(np.array(value.array, copy=True)) if value.array.ndim else torch.tensor(value.array)
    if isinstance(value, _Shared):
        return torch.from_numpy(shared[value.index])
    if isinstance(value, tuple) and len(value) == 4 and value[0] is _Wire:  # decoded from the copy read here
        pixels = shared[value[1].index] if isinstance(value[1], _Shared) else np.array(value[1].array, copy=True)
        return torch.from_numpy(WireImage(pixels, value[2], value[3]).decoded(pixels))
    if isinstance(value, tuple) and len(value) == 3 and value[0] is _Dataclass:
        fields = {k: _unpack(v, shared) for k, v in value[2].items()}
        if value[1] is Frame and _millimetre_depth(value[2].get("depth")):
            return _frame_with_decoded_depth(fields)
        return value[1](**fields)
    if isinstance(value, dict):
        return {k: _unpack(v, shared) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unpack(v, shared) for v in value)
    return value


def _millimetre_depth(packed: Any) -> bool:
    """Whether ``packed`` is a packed :class:`WireImage` of millimetre depth (decoded: > 0 [m] or NaN only)."""
    return (isinstance(packed, tuple) and len(packed) == 4 and packed[0] is _Wire and packed[3] == "depth"
            and packed[2] in MILLIMETRE_DEPTH_ENCODINGS)


def _frame_with_decoded_depth(fields: dict[str, Any]) -> Frame:
    """The :class:`Frame` of ``fields`` checked as ``Frame(...)`` checks it, except the scan of the depth's values
    (about 1 ms at 640x480) that its millimetre encoding makes pointless; the depth's shape and dtype are checked."""
    depth = fields.pop("depth")
    frame = Frame(**fields, depth=None)
    check_shape(depth, (frame.height, frame.width), "depth")
    if depth.dtype not in (torch.float32, torch.float64):
        raise InvalidValueError(f"depth must be floating point; got {depth.dtype}")
    object.__setattr__(frame, "depth", depth)
    return frame


def _write(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other end closed the pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the pipe closed in the middle of a message")
    return pickle.loads(data)


# -- the child ----------------------------------------------------------------------------------------------------
class _Server:
    """Holds the tracker in the child and answers the proxy's calls."""

    def __init__(self) -> None:
        self.tracker: Any = None
        self.hand: Any = None
        #: This process's CPU [ms] (all its threads: warp runs launches on pool threads) in the last ``track``
        #: call: ``receive`` (its request read, images copied out of shared memory and decoded), ``step``
        #: (``ObjectTracker.track``) and ``reply`` (the reply before it packed and written: this one's comes next).
        self.cpu_ms: dict[str, float] = {}

    def _state(self) -> dict[str, Any]:
        tracker = self.tracker
        calibrator = getattr(tracker, "calibration", None)
        return {"initialized": bool(tracker is not None and tracker.initialized),
                "status": tracker.status if tracker is not None else "initialising",
                "calibration": None if calibrator is None else CalibrationSnapshot.of(calibrator),
                "cpu_ms": dict(self.cpu_ms)}

    def build(self, hand_urdf: str, mesh: str, scale: float, settings: Any, mask_source: str,
              warm_up: bool, threads: int, calibration_file: str = "", keep_calibration: bool = False
              ) -> dict[str, Any]:
        from handypriors_core.models import URDFHand, allegro_urdf

        from .tracker_setup import build_tracker
        from .tracker_setup import warm_up as run_warm_up

        torch.set_num_threads(threads)
        old, self.tracker = self.tracker, None
        if self.hand is None or self.hand[0] != hand_urdf:
            self.hand = (hand_urdf, URDFHand.from_urdf(hand_urdf or allegro_urdf()))
        tracker = build_tracker(self.hand[1], mesh, scale, settings, mask_source)
        warning = ""
        if warm_up:
            try:
                run_warm_up(tracker, self.hand[1])
            except Exception as exc:  # noqa: BLE001 - a warm-up failure must not stop the node
                warning = f"tracker warm-up failed (the first frame will be slow): {exc!r}"
        try:  # hand calibration: the previous tracker's estimate on a rebuild, the file (prior), or none
            if keep_calibration and old is not None and getattr(old, "calibration", None) is not None:
                calibration = old.calibration.result()
            elif calibration_file:
                from handypriors_core.io.calibration_file import load_calibration

                calibration = load_calibration(Path(calibration_file).expanduser(), self.hand[1].joint_names)
            else:
                calibration = None
            if calibration is not None or settings.calibration.enabled:
                tracker.set_calibration(calibration)  # (after the warm-up: its synthetic frame is forgotten)
        except HandyPriorsError as exc:
            raise TrackerProcessError(f"calibration_file: {exc}") from None
        self.tracker = tracker
        obj = tracker.scene.object
        return {"verts": obj.verts, "faces": obj.faces, "description": repr(obj), "warning": warning,
                "mask_source": type(tracker.mask_source).__name__, **self._state()}

    def initialize(self, pose: torch.Tensor) -> dict[str, Any]:
        self.tracker.initialize(pose)
        return self._state()

    def reset(self, pose: torch.Tensor | None) -> dict[str, Any]:
        self.tracker.reset()
        if pose is not None:
            self.tracker.initialize(pose)
        return self._state()

    def track(self, frame: Any) -> tuple[Any, dict[str, Any]]:
        cpu = time.process_time()
        estimate = self.tracker.track(frame)
        self.cpu_ms["step"] = 1e3 * (time.process_time() - cpu)
        return estimate, self._state()

    def initialize_from_frame(self, frame: Any) -> tuple[Any, dict[str, Any]]:
        return self.tracker.initialize_from_frame(frame), self._state()

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)

    def echo(self, value: Any) -> Any:
        """The value back (a frame's round trip: the first transfer pays one-off costs at build time)."""
        return value


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """The child's loop: one reply per request until ``requests`` closes."""
    server = _Server()
    frames = FrameRingReader()
    while True:
        try:
            method, args, shared = _read(requests)
        except EOFError:
            frames.close()
            return
        cpu = time.process_time()  # (after the request's read and unpickling)
        try:
            if method not in ("build", "initialize", "reset", "track", "initialize_from_frame", "set_threads", "echo"):
                raise TrackerProcessError(f"unknown request {method!r}")
            if server.tracker is None and method not in ("build", "set_threads", "echo"):
                raise TrackerProcessError("no tracker built in the tracker process")
            arrays = frames.read(shared) if shared is not None else ()
            args = _unpack(args, arrays)
            if method == "track":
                server.cpu_ms["receive"] = 1e3 * (time.process_time() - cpu)
            result = getattr(server, method)(*args)
            cpu = time.process_time()
            reply = ("ok", _pack(result))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the node
            try:
                pickle.dumps(exc)
                reply = ("error", exc)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                reply = ("error", TrackerProcessError(f"{type(exc).__name__}: {exc}"))
        try:
            _write(replies, reply)
        except BrokenPipeError:  # the node closed the pipe while this call ran (it is shutting down)
            frames.close()
            return
        if method == "track":
            server.cpu_ms["reply"] = 1e3 * (time.process_time() - cpu)


def main() -> None:
    """``python -m handypriors_ros.tracker_process`` (started by :class:`TrackerProcess`)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the protocol
    # this file runs as __main__: pickle needs the classes under the package's module name
    importlib.import_module("handypriors_ros.tracker_process").serve(sys.stdin.buffer, replies)
    sys.stderr.flush()
    os._exit(0)  # the node has gone: skip the interpreter's (slow) teardown of torch and warp


# -- the proxies (node side) --------------------------------------------------------------------------------------
class _TrackerProxy:
    """The calls of an :class:`~handypriors_core.estimation.tracker.ObjectTracker` as the node makes them;
    ``initialized`` and ``status`` are those of the tracker after the last call. Subclasses define ``_call``."""

    def __init__(self) -> None:
        self.initialized = False
        self.status = "initialising"
        #: :class:`CalibrationSnapshot` of the hand calibration after the last call (None without one).
        self.calibration: CalibrationSnapshot | None = None
        #: The tracker's CPU [ms] in the last ``track`` (``receive``, ``step``, ``reply``: ``_Server.cpu_ms``).
        self.cpu_ms: dict[str, float] = {}

    def _call(self, method: str, *args: Any) -> Any:
        raise NotImplementedError

    def _update(self, state: dict[str, Any]) -> None:
        self.initialized, self.status = state["initialized"], state["status"]
        self.calibration = state.get("calibration")
        self.cpu_ms = state.get("cpu_ms", {})

    def build(self, hand_urdf: str, mesh: str, scale: float, settings: Any, mask_source: str, warm_up: bool,
              threads: int = 1, calibration_file: str = "", keep_calibration: bool = False) -> dict[str, Any]:
        """Build (or rebuild) the tracker; returns ``verts (V, 3)``, ``faces (F, 3)`` of the object, its
        ``description``, a warm-up ``warning`` ("" if none) and the ``mask_source`` type name.

        Hand calibration: ``keep_calibration`` carries the previous tracker's estimate over; else
        ``calibration_file`` (when set) is the prior."""
        self.initialized, self.status, self.calibration = False, "initialising", None
        info = self._call("build", hand_urdf, mesh, scale, settings, mask_source, warm_up, threads,
                          calibration_file, keep_calibration)
        self._update(info)
        if warm_up:  # a frame there and back: the first transfer's one-off costs are paid now, not by frame 1
            from .tracker_setup import synthetic_frame

            # (with an image large enough to go through shared memory: the ring, Python's resource tracker for it
            # and the tracker process's mapping are set up here, not by the first camera frame)
            self._call("echo", (synthetic_frame(16), torch.zeros(SHARED_MIN_BYTES, dtype=torch.uint8)))
        return info

    def initialize(self, object2camera: torch.Tensor) -> None:
        self._update(self._call("initialize", object2camera))

    def reset(self, object2camera: torch.Tensor | None = None) -> None:
        self._update(self._call("reset", object2camera))

    def track(self, frame: Any) -> Any:
        estimate, state = self._call("track", frame)
        self._update(state)
        return estimate

    # -- the overlapped worker's calls: pack the next frame while one is tracked, send it, collect its estimate
    def pack_track(self, frame: Any) -> Any:
        """``frame`` made ready to send (a process writes its images into shared memory now); for
        :meth:`start_track`."""
        return frame

    def start_track(self, packed: Any) -> None:
        """Start tracking a frame of :meth:`pack_track`; its estimate comes from :meth:`finish_track`. Here (no
        process) the frame is tracked now, before this returns."""
        try:
            self._result: tuple[str, Any] | None = ("ok", self.track(packed))
        except Exception as exc:  # noqa: BLE001 - raised by finish_track, as a process's error would be
            self._result = ("error", exc)

    def finish_track(self) -> Any:
        """The estimate of the frame of :meth:`start_track` (waits for it); raises what tracking it raised."""
        result, self._result = getattr(self, "_result", None), None
        if result is None:
            raise TrackerProcessError("finish_track without a frame in flight")
        kind, value = result
        if kind == "error":
            raise value
        return value

    def reply_fileno(self) -> int | None:
        """A file descriptor that becomes readable once the frame in flight has its estimate; None when
        :meth:`finish_track` does not wait (no frame in flight, or tracked by :meth:`start_track` itself)."""
        return None

    def initialize_from_frame(self, frame: Any) -> Any:
        result, state = self._call("initialize_from_frame", frame)
        self._update(state)
        return result

    def set_threads(self, threads: int) -> None:
        self._call("set_threads", threads)

    def close(self, timeout: float = 5.0) -> None:
        """Release the tracker (and its process)."""


class InProcessTracker(_TrackerProxy):
    """The same calls on a tracker in this process (the node's ``tracker_process: false``: tests, debugging)."""

    def __init__(self) -> None:
        super().__init__()
        self._server = _Server()

    def _call(self, method: str, *args: Any) -> Any:
        if self._server.tracker is None and method not in ("build", "set_threads"):
            raise TrackerProcessError("no tracker built")
        return getattr(self._server, method)(*args)


@dataclasses.dataclass
class _Packed:
    """A call's packed arguments and the descriptor of its arrays in shared memory (None: none there)."""

    args: Any
    shared: Any


class TrackerProcess(_TrackerProxy):
    """The tracker in a child process (see the module docstring). Calls block the calling thread (the node's
    worker) until the child answers; the child's errors are raised here with their own types. Thread-safe (one
    call at a time)."""

    def __init__(self) -> None:
        super().__init__()
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._frames: FrameRing | None = None  # created with the first large tensor (a frame)
        self._in_flight: _Packed | None = None  # the frame the child tracks (start_track .. finish_track)
        self._packed: _Packed | None = None  # the frame packed for the next start_track (its slot is kept)
        self._in_flight_process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "handypriors_ros.tracker_process"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, start_new_session=True)
        return self._process

    def _pack_shared(self, args: Any) -> _Packed:
        """``args`` packed, their large arrays written into the ring (never into the slot of the frame in flight
        or of the packed one)."""
        arrays: list[np.ndarray] = []
        packed = _pack(args, arrays)
        if arrays and self._frames is None:
            self._frames = FrameRing()
        keep = [p.shared for p in (self._in_flight, self._packed) if p is not None]
        return _Packed(packed, self._frames.write(arrays, keep) if arrays else None)

    def _send(self, method: str, packed: _Packed) -> subprocess.Popen:
        process = self._start()
        try:
            _write(process.stdin, (method, packed.args, packed.shared))
        except OSError as exc:
            self.close()
            raise TrackerProcessError(f"the tracker process ended before {method!r} ({exc}); it is restarted at "
                                      f"the next build") from None
        return process

    def _receive(self, method: str, process: subprocess.Popen) -> Any:
        try:
            kind, value = _read(process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            self.close()
            raise TrackerProcessError(f"the tracker process ended during {method!r} ({exc}); it is restarted "
                                      f"at the next build") from None
        if kind == "error":
            raise value
        return _unpack(value)

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._in_flight is not None:
                raise TrackerProcessError(f"{method!r} while a frame is in flight (finish_track first)")
            return self._receive(method, self._send(method, self._pack_shared(args)))

    def pack_track(self, frame: Any) -> _Packed:
        with self._lock:
            self._packed = None  # (one frame packed at a time: a newer one replaces it, and may take its slot)
            self._packed = self._pack_shared((frame,))
            return self._packed

    def start_track(self, packed: Any) -> None:
        with self._lock:
            if self._in_flight is not None:
                raise TrackerProcessError("start_track while a frame is in flight (finish_track first)")
            if packed is self._packed:
                self._packed = None
            process = self._send("track", packed)
            self._in_flight = packed
            self._in_flight_process = process

    def finish_track(self) -> Any:
        with self._lock:
            if self._in_flight is None:
                raise TrackerProcessError("finish_track without a frame in flight")
            process, self._in_flight = self._in_flight_process, None
            estimate, state = self._receive("track", process)
        self._update(state)
        return estimate

    def reply_fileno(self) -> int | None:
        process = self._process
        return process.stdout.fileno() if self._in_flight is not None and process is not None else None

    def close(self, timeout: float = 1.0) -> None:
        """End the child (closing its stdin ends its loop; killed after ``timeout`` seconds: it holds no state
        worth waiting for, and ``ros2 launch`` escalates to SIGTERM 5 s after its SIGINT)."""
        process, self._process = self._process, None
        frames, self._frames = self._frames, None
        self._in_flight = self._packed = None
        if frames is not None:
            frames.close()
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
