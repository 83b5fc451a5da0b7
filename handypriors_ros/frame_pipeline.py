"""The tracker node's worker loop: the next frame is assembled while the tracker process tracks this one.

With the tracker in its own process (``tracker_process: true``), a frame's path through the worker was
``inputs -> track -> publish`` in series: 35-45 ms on the dev bags, more than the 33 ms between two camera frames,
so the tracker waited for the worker and frames were dropped as ``busy`` (docs/node_runtime.md). Here one thread
keeps three frames apart and never sits idle while the tracker computes:

- **waiting**: an image taken from the mailbox, its inputs not all there yet (depth past its stamp, the joint
  state and TF sample after it); it waits at most until its deadline (``sync_timeout`` after it arrived);
- **ready**: assembled (stamp matching, joint / TF interpolation, images written into shared memory), waiting for
  the tracker to finish the frame in flight;
- **in flight**: sent to the tracker process.

When the estimate of the frame in flight arrives, the ready frame is sent at once and only then are the estimate's
outputs published, so publishing overlaps with the tracker's next step. The newest image wins: a ready frame that
a newer image replaces before the tracker took it is dropped as ``busy`` (an image still waiting for its inputs is
assembled first: a frame whose inputs are late but within the bound is never lost to a newer one).

The worker waits with ``select`` on two file descriptors, the tracker's reply pipe and a :class:`Doorbell` that
the intake thread rings (a new image; an input arriving for the waiting frame; a request such as ``~/reset``): no
polling, and no thread beside the intake and the worker (more threads contend for the interpreter lock:
measured, docs/node_runtime.md). A tracker without a reply pipe (``tracker_process: false``) tracks the frame when
it is sent; the loop is then the serial one.

No rclpy here: the node hands in its stages (:class:`PipelineStages`), and ``test/test_ros_frame_pipeline.py``
drives the loop with a stub tracker.
"""

from __future__ import annotations

import dataclasses
import math
import os
import select
import threading
import time
from typing import Any, Protocol

__all__ = ["Doorbell", "FramePipeline", "PipelineStages", "StagedFrame"]


class Doorbell:
    """A wake-up that ``select`` can wait on: :meth:`ring` (any thread) makes :meth:`fileno` readable until
    :meth:`clear`. Rings between two clears cost one write (a flag), so a high-rate input costs next to nothing.

    The waiter clears the bell *before* it looks at what it waits for, then waits: a ring after the look is never
    lost (the byte stays in the pipe), and a ring before it is seen by the look.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._rung = False

    def ring(self) -> None:
        if self._rung:
            return
        self._rung = True
        try:
            os.write(self._write, b"!")
        except (BlockingIOError, OSError):  # full (cannot be: one byte per clear) or closed at shutdown
            pass

    def clear(self) -> None:
        try:  # (drained before the flag is reset: a ring in between must not leave the flag set and the pipe empty)
            while os.read(self._read, 64):
                pass
        except (BlockingIOError, OSError):
            pass
        self._rung = False

    def fileno(self) -> int:
        return self._read

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclasses.dataclass
class StagedFrame:
    """One frame on its way through the worker: the node's ``payload`` (what :meth:`PipelineStages.start` sends
    and :meth:`PipelineStages.publish` needs) and the times of its stages (``time.monotonic`` [s]; CPU: this
    thread's ``time.thread_time`` [s])."""

    item: Any  # the ImageItem (msg, stamp_ns, received)
    payload: Any
    taken: float  # from the mailbox (then its inputs were waited for)
    assembled: float
    inputs_cpu_s: float
    waited: float = math.nan  # its inputs all there (or its deadline passed): assembling began
    prepare_cpu_s: float = 0.0  # this thread's CPU decoding its images while it waited (``prepare``)
    sent: float = math.nan
    send_cpu_s: float = 0.0


class PipelineStages(Protocol):
    """What the node does at each stage (all called in the worker thread)."""

    def take(self) -> Any:
        """The newest image from the mailbox (removed), or None; never waits."""

    def inputs_ready(self, item: Any) -> bool:
        """Whether ``item``'s inputs are all there (assembling it would not wait)."""

    def prepare(self, item: Any) -> None:
        """Work on ``item`` that needs none of the inputs still awaited (decoding its images while its joint states
        and TF come), done while it waits; never raises, never waits."""

    def deadline(self, item: Any) -> float:
        """``time.monotonic`` after which ``item`` is assembled with what is there."""

    def assemble(self, item: Any) -> Any:
        """The payload of ``item`` (raises when the frame cannot be built: see :meth:`failed`)."""

    def start(self, payload: Any) -> None:
        """Send the frame to the tracker (raises when it cannot be: see :meth:`failed`)."""

    def finish(self) -> Any:
        """The estimate of the frame in flight (waits for it; raises what tracking it raised)."""

    def reply_fileno(self) -> int | None:
        """Readable once the frame in flight has its estimate; None: :meth:`finish` returns at once."""

    def publish(self, staged: StagedFrame, estimate: Any) -> None:
        """Publish the frame's outputs."""

    def failed(self, error: Exception) -> None:
        """A stage of a frame raised ``error``: count the drop or note why the node waits."""

    def requests_pending(self) -> bool:
        """Whether :meth:`apply_requests` has work (a reset, a rebuild): applied with no frame in flight."""

    def apply_requests(self) -> None:
        """Apply queued requests (tracker calls: only when no frame is in flight)."""

    def record_stages(self, stages_ms: dict[str, float]) -> None:
        """The stage times of the frame just published [ms]."""


class FramePipeline:
    """The worker loop of the module docstring. ``bell`` is rung by the mailbox (new image, requests) and by the
    input signal while :attr:`waiting_for_inputs` (set here: ``arm(bool)``); ``poll_s``: the longest wait for a
    waiting frame's inputs between two looks (inputs that do not ring the bell); ``idle_s``: the wake-up period
    without frames."""

    def __init__(self, stages: PipelineStages, bell: Doorbell, arm: Any, poll_s: float | None = None,
                 idle_s: float = 0.1) -> None:
        self.stages = stages
        self.bell = bell
        self._arm = arm
        self._poll_s = poll_s
        self._idle_s = idle_s
        self.waiting: Any = None  # image taken, inputs not all there
        self._waiting_since = math.nan  # when it was taken from the mailbox (time.monotonic)
        self._prepare_cpu_s = 0.0  # this thread's CPU in ``prepare`` for the waiting frame
        self.ready: StagedFrame | None = None  # assembled, not sent
        self.in_flight: StagedFrame | None = None  # sent to the tracker
        self._estimate_at = math.nan

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set (the mailbox's close rings the bell)."""
        while not stop.is_set():
            self.step(stop)

    def step(self, stop: threading.Event | None = None) -> None:
        """One turn: apply requests / send the ready frame when the tracker is free, collect an estimate, take a
        new image, assemble the waiting one when its inputs are there; else wait for one of them."""
        stages = self.stages
        self.bell.clear()  # (before looking: a ring from now on stays readable)
        if self.in_flight is None:
            if stages.requests_pending():
                stages.apply_requests()
            if self.ready is not None:
                self._start(self.ready)
        if self.in_flight is not None and stages.reply_fileno() is None:
            self._complete()  # (a tracker without a process tracked it when it was sent)
            return
        if self.waiting is None:
            item = stages.take()
            if item is not None:
                if self.ready is not None:  # newest wins: the assembled frame the tracker did not take yet
                    self.ready = None
                    stages.failed(FrameReplaced())
                self.waiting, self._waiting_since, self._prepare_cpu_s = item, time.monotonic(), 0.0
        if self.waiting is not None:
            self._arm(True)  # (before the look: an input arriving after it rings the bell)
            if stages.inputs_ready(self.waiting) or time.monotonic() >= stages.deadline(self.waiting):
                self._arm(False)
                self._assemble(self.waiting)
                return
            cpu = time.thread_time()
            stages.prepare(self.waiting)
            self._prepare_cpu_s += time.thread_time() - cpu
        if stop is None or not stop.is_set():
            self._wait()
        self._arm(False)

    def _wait(self) -> None:
        stages = self.stages
        waiting = self.waiting
        timeout = self._idle_s
        if waiting is not None:
            timeout = max(0.0, stages.deadline(waiting) - time.monotonic())
            if self._poll_s is not None:
                timeout = min(timeout, self._poll_s)
        reply = stages.reply_fileno() if self.in_flight is not None else None
        fds = [self.bell.fileno()] if reply is None else [self.bell.fileno(), reply]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except (OSError, ValueError):  # a descriptor closed under us (shutdown, a tracker process restarted)
            readable = []
            time.sleep(min(timeout, 0.01))
        if reply is not None and reply in readable:
            self._complete()

    def _assemble(self, item: Any) -> None:
        self.waiting = None
        waited, cpu = time.monotonic(), time.thread_time()
        try:
            payload = self.stages.assemble(item)
        except Exception as exc:  # noqa: BLE001 - the node counts it (input drop) or notes why it waits
            self.stages.failed(exc)
            return
        self.ready = StagedFrame(item, payload, self._waiting_since, time.monotonic(), time.thread_time() - cpu,
                                 waited, self._prepare_cpu_s)

    def _start(self, staged: StagedFrame) -> None:
        self.ready = None
        cpu = time.thread_time()
        try:
            self.stages.start(staged.payload)
        except Exception as exc:  # noqa: BLE001
            self.stages.failed(exc)
            return
        staged.sent, staged.send_cpu_s = time.monotonic(), time.thread_time() - cpu
        self.in_flight = staged

    def _complete(self) -> None:
        """The estimate of the frame in flight: the ready frame goes to the tracker first, then the outputs."""
        staged, self.in_flight = self.in_flight, None
        cpu = time.thread_time()
        try:
            estimate = self.stages.finish()
        except Exception as exc:  # noqa: BLE001
            self.stages.failed(exc)
            estimate = None
        received, receive_cpu = time.monotonic(), time.thread_time() - cpu
        if self.ready is not None and not self.stages.requests_pending():
            self._start(self.ready)
        if estimate is None:
            return
        cpu_publish = time.thread_time()
        try:
            self.stages.publish(staged, estimate)
        except Exception as exc:  # noqa: BLE001
            self.stages.failed(exc)
            return
        self.stages.record_stages({
            "queue_ms": 1e3 * (staged.taken - staged.item.received),
            "inputs_ms": 1e3 * (staged.assembled - staged.taken),  # (waiting for them included)
            "wait_ms": 1e3 * (staged.waited - staged.taken),  # of which: until its inputs were all there
            "held_ms": 1e3 * (staged.sent - staged.assembled),  # ready, the tracker busy with the frame before
            "track_ms": 1e3 * (received - staged.sent),
            "publish_ms": 1e3 * (time.monotonic() - received),  # (the next frame's send included)
            # this thread's CPU per stage (track: sending the frame, reading the estimate)
            "inputs_cpu_ms": 1e3 * staged.inputs_cpu_s,  # (assembling, after the wait)
            "prepare_cpu_ms": 1e3 * staged.prepare_cpu_s,  # (decoding its images during the wait)
            "track_cpu_ms": 1e3 * (staged.send_cpu_s + receive_cpu),
            "publish_cpu_ms": 1e3 * (time.thread_time() - cpu_publish)})


class FrameReplaced(Exception):
    """An assembled frame replaced by a newer image before the tracker took it (counted as ``busy``)."""
