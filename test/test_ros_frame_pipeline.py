"""The node's worker loop (handypriors_ros.frame_pipeline) with a stub tracker: frame N+1 is assembled while N is
tracked and sent before N's outputs are published; an assembled frame a newer image replaces is the only drop
(``busy``); a frame waiting for its inputs wakes on the input signal's bell, not by polling. No rclpy, no timing
bounds: the stub tracker answers when the test releases it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from handypriors_ros.frame_pipeline import Doorbell, FramePipeline, FrameReplaced
from handypriors_ros.frame_sync import ImageItem, InputSignal, Mailbox

DEADLINE = 30.0  # generous: only a hang reaches it


class StubTracker:
    """A tracker 'process' whose reply pipe becomes readable when the test releases the frame in flight."""

    def __init__(self, with_pipe: bool = True) -> None:
        self._read, self._write = os.pipe() if with_pipe else (None, None)
        self.in_flight = None

    def start(self, payload):
        assert self.in_flight is None, "a frame was sent while another one was in flight"
        self.in_flight = payload

    def release(self):
        os.write(self._write, b"x")

    def finish(self):
        if self._read is not None:
            os.read(self._read, 1)
        payload, self.in_flight = self.in_flight, None
        return f"estimate {payload}"

    def reply_fileno(self):
        return self._read if self.in_flight is not None else None


class Stages:
    """The node's side: records every stage as (event, frame number) in order."""

    def __init__(self, mailbox: Mailbox, tracker: StubTracker) -> None:
        self.mailbox, self.tracker = mailbox, tracker
        self.events: list[tuple[str, int]] = []
        self.failures: list[Exception] = []
        self.ready_inputs: set[int] = set()
        self.all_inputs_ready = True
        self.stages_ms: list[dict] = []
        self.lock = threading.Lock()

    def _record(self, event, n):
        with self.lock:
            self.events.append((event, n))

    def take(self):
        return self.mailbox.take(0)

    def inputs_ready(self, item):
        return self.all_inputs_ready or item.msg in self.ready_inputs

    def prepare(self, item):
        if item.prepared is None:
            item.prepared = True
            self._record("prepare", item.msg)

    def deadline(self, item):
        return item.received + 60.0

    def assemble(self, item):
        self._record("assemble", item.msg)
        return item.msg

    def start(self, payload):
        self.tracker.start(payload)
        self._record("start", payload)

    def finish(self):
        return self.tracker.finish()

    def reply_fileno(self):
        return self.tracker.reply_fileno()

    def publish(self, staged, estimate):
        assert estimate == f"estimate {staged.payload}"
        self._record("publish", staged.payload)

    def failed(self, error):
        self.failures.append(error)

    def requests_pending(self):
        return False

    def apply_requests(self):
        pass

    def record_stages(self, stages_ms):
        self.stages_ms.append(stages_ms)


@pytest.fixture
def pipeline_factory():
    running = []

    def make(with_pipe: bool = True, poll_s=None):
        bell = Doorbell()
        mailbox = Mailbox(bell)
        signal = InputSignal(bell=bell)
        stages = Stages(mailbox, StubTracker(with_pipe))
        pipeline = FramePipeline(stages, bell, arm=lambda on: setattr(signal, "armed", on), poll_s=poll_s,
                                 idle_s=DEADLINE)  # (no periodic wake-up: every wake-up must come from a bell)
        stop = threading.Event()
        thread = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, mailbox, thread, bell))
        return pipeline, stages, mailbox, signal

    yield make
    for stop, mailbox, thread, bell in running:
        stop.set()
        mailbox.close()
        thread.join(5.0)
        assert not thread.is_alive(), "the worker did not stop"
        bell.close()


def wait_until(condition, what: str):
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.002)


def put(mailbox: Mailbox, n: int) -> bool:
    return mailbox.put(ImageItem(n, n, time.monotonic()))


def test_the_next_frame_is_assembled_while_one_is_tracked_and_sent_before_its_outputs(pipeline_factory):
    _, stages, mailbox, _ = pipeline_factory()
    put(mailbox, 1)
    wait_until(lambda: ("start", 1) in stages.events, "frame 1 sent")
    put(mailbox, 2)  # while 1 is tracked
    wait_until(lambda: ("assemble", 2) in stages.events, "frame 2 assembled")
    assert ("publish", 1) not in stages.events and stages.tracker.in_flight == 1  # (2 waits, ready)
    stages.tracker.release()
    wait_until(lambda: ("publish", 1) in stages.events, "frame 1 published")
    events = stages.events
    assert events.index(("assemble", 2)) < events.index(("publish", 1))
    assert events.index(("start", 2)) < events.index(("publish", 1)), "frame 2 must go to the tracker first"
    stages.tracker.release()
    wait_until(lambda: ("publish", 2) in stages.events, "frame 2 published")
    assert stages.failures == []
    assert [e for e in stages.events if e[0] == "publish"] == [("publish", 1), ("publish", 2)]
    assert all(s["held_ms"] >= 0 and s["track_ms"] >= 0 for s in stages.stages_ms)


def test_an_assembled_frame_replaced_by_a_newer_image_is_the_only_drop_and_counts_as_busy(pipeline_factory):
    _, stages, mailbox, _ = pipeline_factory()
    put(mailbox, 1)
    wait_until(lambda: ("start", 1) in stages.events, "frame 1 sent")
    put(mailbox, 2)
    wait_until(lambda: ("assemble", 2) in stages.events, "frame 2 assembled")
    put(mailbox, 3)  # replaces the assembled 2 (the tracker still has 1)
    wait_until(lambda: ("assemble", 3) in stages.events, "frame 3 assembled")
    stages.tracker.release()
    wait_until(lambda: ("start", 3) in stages.events, "frame 3 sent")
    stages.tracker.release()
    wait_until(lambda: ("publish", 3) in stages.events, "frame 3 published")
    assert [e for e in stages.events if e[0] in ("start", "publish")] == [
        ("start", 1), ("start", 3), ("publish", 1), ("publish", 3)]
    assert len(stages.failures) == 1 and isinstance(stages.failures[0], FrameReplaced)


def test_a_frame_waiting_for_its_inputs_wakes_on_the_input_bell_and_is_not_replaced(pipeline_factory):
    _, stages, mailbox, signal = pipeline_factory()
    stages.all_inputs_ready = False
    put(mailbox, 1)
    wait_until(lambda: signal.armed, "the worker waiting for frame 1's inputs")
    put(mailbox, 2)  # a newer image does not replace a frame waiting for inputs within the bound
    time.sleep(0.05)
    assert stages.events == [("prepare", 1)] and stages.failures == []  # (its images decoded while it waits)
    stages.ready_inputs.add(1)
    wait_until(lambda: signal.armed, "the worker armed again")
    signal.notify()  # an input arrives: rings the bell (no poll wakes the worker: idle_s and the deadline are long)
    wait_until(lambda: ("start", 1) in stages.events, "frame 1 sent")
    assert ("assemble", 2) not in stages.events  # (2's inputs are not there yet)
    stages.ready_inputs.add(2)
    signal.notify()
    wait_until(lambda: ("assemble", 2) in stages.events, "frame 2 assembled")
    assert stages.events.index(("prepare", 2)) < stages.events.index(("assemble", 2))
    stages.tracker.release()
    stages.tracker.release()
    wait_until(lambda: ("publish", 2) in stages.events, "frame 2 published")
    assert stages.failures == []
    first = stages.stages_ms[0]
    assert first["inputs_ms"] >= 50.0  # (frame 1 waited for its inputs: counted in its inputs stage)
    assert 50.0 <= first["wait_ms"] <= first["inputs_ms"]  # (of which the wait, until its inputs were all there)
    assert first["prepare_cpu_ms"] >= 0.0 and first["inputs_cpu_ms"] >= 0.0


def test_a_tracker_without_a_reply_pipe_runs_the_frames_in_series(pipeline_factory):
    _, stages, mailbox, _ = pipeline_factory(with_pipe=False)
    for n in (1, 2):
        put(mailbox, n)
        wait_until(lambda n=n: ("publish", n) in stages.events, f"frame {n} published")
    assert stages.events == [("assemble", 1), ("start", 1), ("publish", 1), ("assemble", 2), ("start", 2),
                             ("publish", 2)]


def test_the_doorbell_stays_readable_until_cleared_and_rings_once_per_clear():
    import select

    bell = Doorbell()
    try:
        assert select.select([bell], [], [], 0)[0] == []
        for _ in range(1000):  # many rings between two clears: one byte
            bell.ring()
        assert select.select([bell], [], [], 0)[0] == [bell]
        bell.clear()
        assert select.select([bell], [], [], 0)[0] == []
        bell.ring()
        assert select.select([bell], [], [], 0)[0] == [bell]
    finally:
        bell.close()

