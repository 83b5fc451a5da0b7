"""A dedicated intake thread for the node's high-rate raw subscriptions (joint states, ``/tf``): drained in batches.

rclpy's Python executor (``SingleThreadedExecutor``) rebuilds a wait set of every entity of the node (the
parameter services, timers, all subscriptions) for each message it hands out and wraps each one in a task and a
coroutine: about 0.5-1 ms of Python per message (``docs/node_runtime.md``), which at 333 Hz joint states + 100 Hz
``/tf`` is a third of a core and, while that thread waits for the interpreter lock, the intake lag.

:class:`RawIntake` serves the subscriptions it is given in a thread of its own: one small wait set (those
subscriptions and a stop guard condition), and on every wake-up each ready subscription is drained
(``take_message`` until it is empty) and its callback called with the CDR bytes. The subscriptions are created
through the node as usual but in :data:`SERVED_ELSEWHERE`'s callback group, which the node's executor never
waits on, so no message is taken twice and the executor keeps only the low-rate work (images, services, timers).

    group = served_elsewhere_group()
    sub = node.create_subscription(JointState, "/joint_states", on_bytes, qos, raw=True, callback_group=group)
    intake = RawIntake(node.context, [sub]); intake.start(); ...; intake.stop()

Callbacks run in the intake thread; they must be short and thread-safe (the node's are: parse, store, notify).
An exception in a callback is passed to ``on_error`` (never ends the thread).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

from .node_runtime import name_os_thread, profiled_thread

__all__ = ["RawIntake", "ServedElsewhere", "receive_thread_ids", "set_threads_nice"]

#: Linux names of Fast DDS's receive threads (one per listening shared-memory port / UDP socket; its shared-memory
#: watchdog ``dds.shm.wdog`` only watches): the first hop of every input, before the intake thread's wait set.
_RECEIVE_THREAD_PREFIXES = ("dds.shm.", "dds.udp.")
_NOT_RECEIVING = ("dds.shm.wdog",)

_WAIT_NS = 200_000_000  # wake-up period without messages [ns] (the stop guard ends a wait at once)


class ServedElsewhere(CallbackGroup):
    """A callback group the executor never runs: its entities are served by a :class:`RawIntake`."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        return None


class RawIntake:
    """Serve ``subscriptions`` (created with ``raw=True`` in a :class:`ServedElsewhere` group) in one thread.

    Attributes:
        taken: messages handed to callbacks, per topic name.
        wakeups: wait-set wake-ups that found messages (``sum(taken) / wakeups`` is the mean batch). The thread's
            CPU is read from ``/proc`` by the benchmark (its Linux name is ``hp_intake``).
    """

    def __init__(self, context: Any, subscriptions: Sequence[Any],
                 on_error: Callable[[str], Any] | None = None, name: str = "raw_intake", nice: int = 0) -> None:
        self._context = context
        self._subscriptions = list(subscriptions)
        self._on_error = on_error
        self._stop = threading.Event()
        self._guard = GuardCondition(None, None, context=context)
        self.taken = {sub.topic_name: 0 for sub in self._subscriptions}
        self.wakeups = 0
        self._nice = nice
        self._started = threading.Event()
        #: Whether the thread's scheduling priority was changed as asked (``nice`` != 0 needs CAP_SYS_NICE to lower it).
        self.nice_applied: bool | None = None
        #: How many of Fast DDS's receive threads of this process got ``nice`` too (:func:`receive_thread_ids`).
        self.receive_threads_niced = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_started(self, timeout: float) -> bool | None:
        """:attr:`nice_applied` once the thread has set its priority (None: no priority asked or not yet)."""
        self._started.wait(timeout)
        return self.nice_applied

    def stop(self, timeout: float = 2.0) -> None:
        """End the thread (before the subscriptions or the context are destroyed); idempotent."""
        self._stop.set()
        try:
            self._guard.trigger()
        except Exception:  # noqa: BLE001 - the context may be gone already; the wait then times out
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._guard.destroy()

    def _run(self) -> None:
        name_os_thread("hp_intake")
        if self._nice:
            # this thread and the DDS threads that hand it the messages (theirs created with the subscriptions)
            receivers = receive_thread_ids()
            self.nice_applied = set_threads_nice([threading.get_native_id()], self._nice)
            if self.nice_applied:
                self.receive_threads_niced = len(receivers) if set_threads_nice(receivers, self._nice) else 0
        self._started.set()
        with profiled_thread("intake"):
            self._serve()

    def _serve(self) -> None:
        subscriptions = self._subscriptions
        with self._context.handle:  # one wait set for the thread's life (making one per wake-up costs more)
            wait_set = _rclpy.WaitSet(len(subscriptions), 1, 0, 0, 0, 0, self._context.handle)
        while not self._stop.is_set():
            try:
                ready = self._wait(wait_set, subscriptions)
            except Exception as exc:  # noqa: BLE001 - context shut down, handles destroyed: stop serving
                if not self._stop.is_set() and self._context.ok():
                    self._error(f"intake wait failed: {exc!r}")
                    time.sleep(0.1)
                    continue
                return
            if not ready:
                continue
            self.wakeups += 1
            for sub in ready:
                self._drain(sub)

    def _wait(self, wait_set: Any, subscriptions: list[Any]) -> list[Any]:
        """Block (without the interpreter lock) until a subscription has data; returns those that have."""
        handles = [sub.handle for sub in subscriptions]
        for handle in handles:
            handle.__enter__()
        try:
            with self._guard.handle, self._context.handle:
                wait_set.clear_entities()
                for handle in handles:
                    wait_set.add_subscription(handle)
                wait_set.add_guard_condition(self._guard.handle)
                wait_set.wait(_WAIT_NS)
                ready = wait_set.get_ready_entities("subscription")
        finally:
            for handle in handles:
                handle.__exit__(None, None, None)
        return [sub for sub in subscriptions if sub.handle.pointer in ready]

    def _drain(self, sub: Any) -> None:
        callback, count = sub.callback, 0
        try:
            with sub.handle:
                while not self._stop.is_set():
                    taken = sub.handle.take_message(sub.msg_type, True)
                    if taken is None:
                        break
                    count += 1
                    try:
                        callback(taken[0])
                    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the intake
                        self._error(f"{sub.topic_name}: callback failed: {exc!r}")
        except Exception as exc:  # noqa: BLE001 - the subscription was destroyed while draining
            if not self._stop.is_set():
                self._error(f"{sub.topic_name}: {exc!r}")
        self.taken[sub.topic_name] += count

    def _error(self, message: str) -> None:
        if self._on_error is not None:
            self._on_error(message)


def receive_thread_ids(pid: int | None = None) -> list[int]:
    """Linux thread ids of Fast DDS's receive threads in process ``pid`` (default: this one), from /proc (empty
    where there is no /proc or no such thread: another RMW)."""
    base = f"/proc/{os.getpid() if pid is None else pid}/task"
    out = []
    try:
        tasks = os.listdir(base)
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"{base}/{task}/comm") as comm:
                name = comm.read().strip()
        except OSError:  # (ended meanwhile)
            continue
        if name.startswith(_RECEIVE_THREAD_PREFIXES) and name not in _NOT_RECEIVING:
            out.append(int(task))
    return sorted(out)


def set_threads_nice(thread_ids: Sequence[int], nice: int) -> bool:
    """Give each thread of ``thread_ids`` the scheduling priority ``nice`` (Linux: a thread id as the "process" of
    ``setpriority`` changes that thread alone). False when not permitted (below 0 needs CAP_SYS_NICE); a thread that
    ended meanwhile is skipped."""
    for tid in thread_ids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:
            continue
        except (OSError, AttributeError):
            return False
    return True
