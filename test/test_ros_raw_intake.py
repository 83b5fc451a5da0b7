"""RawIntake: the node's high-rate subscriptions drained by a thread of their own, never by the executor."""

from __future__ import annotations

import os
import threading
import time

import pytest

from handypriors_ros import cdr
from handypriors_ros import conversions as cv

pytest.importorskip("rclpy")


def _wait(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    return condition()


def test_intake_thread_takes_every_message_in_order_and_the_executor_none(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    from handypriors_ros.qos import JOINT_STATES_QOS
    from handypriors_ros.raw_intake import RawIntake, ServedElsewhere, receive_thread_ids

    node = Node("raw_intake_test", context=ros_context)
    stamps: list[int] = []
    threads: set[str] = set()
    errors: list[str] = []

    def on_bytes(data: bytes) -> None:
        threads.add(threading.current_thread().name)
        stamp = cdr.parse_joint_state(data).stamp_ns
        if stamp == 13:
            raise ValueError("a callback that fails")  # reported, and the intake goes on
        stamps.append(stamp)

    sub = node.create_subscription(JointState, "/joint_states", on_bytes, JOINT_STATES_QOS, raw=True,
                                   callback_group=ServedElsewhere())
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name="executor", daemon=True)
    spinner.start()
    nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)  # (a higher nice needs no privilege)
    intake = RawIntake(ros_context, [sub], on_error=errors.append, name="intake_under_test", nice=nice)
    intake.start()
    assert intake.wait_started(5.0) is True
    assert os.getpriority(os.PRIO_PROCESS, intake._thread.native_id) == nice  # that thread alone
    assert os.getpriority(os.PRIO_PROCESS, 0) == nice - 5 or nice == 19
    # and Fast DDS's receive threads, which hand the intake thread its messages
    assert intake.receive_threads_niced >= 1
    niced = [tid for tid in receive_thread_ids() if os.getpriority(os.PRIO_PROCESS, tid) == nice]
    assert len(niced) >= intake.receive_threads_niced
    publisher = node.create_publisher(JointState, "/joint_states", JOINT_STATES_QOS)
    assert _wait(lambda: publisher.get_subscription_count() > 0, 10.0)
    data = serialize_message(JointState(header=cv.make_header(0), name=["a"], position=[0.5]))
    try:
        count = 60
        for stamp in range(1, count + 1):
            publisher.publish(cdr.restamp_header(data, stamp))
            if stamp % 20 == 0:
                time.sleep(0.05)  # (within the reliable depth-100 queue)
        assert _wait(lambda: len(stamps) == count - 1, 10.0), f"{len(stamps)} of {count - 1}"
        assert stamps == [s for s in range(1, count + 1) if s != 13]
        assert threads == {"intake_under_test"}  # never the executor's thread
        assert len(errors) == 1 and "a callback that fails" in errors[0]
        assert intake.taken["/joint_states"] == count and 1 <= intake.wakeups <= count
    finally:
        start = time.monotonic()
        intake.stop()
        stopped = time.monotonic() - start
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    assert stopped < 1.0 and not intake._thread.is_alive()  # the guard condition ends the wait at once


def test_receive_threads_are_found_by_name_and_given_a_priority():
    """Fast DDS names its receive threads ``dds.shm.<port>`` / ``dds.udp.<port>``; its watchdog is left alone."""
    from handypriors_ros.node_runtime import name_os_thread
    from handypriors_ros.raw_intake import receive_thread_ids, set_threads_nice

    found: dict[str, int] = {}
    ready, release = threading.Event(), threading.Event()

    def named(name: str) -> None:
        name_os_thread(name)
        found[name] = threading.get_native_id()
        if len(found) == 3:
            ready.set()
        release.wait(10.0)

    threads = [threading.Thread(target=named, args=(n,)) for n in ("dds.shm.7411", "dds.udp.7410", "dds.shm.wdog")]
    for thread in threads:
        thread.start()
    try:
        assert ready.wait(10.0)
        ids = set(receive_thread_ids())
        assert found["dds.shm.7411"] in ids and found["dds.udp.7410"] in ids
        assert found["dds.shm.wdog"] not in ids
        nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3)  # (a higher nice needs no privilege)
        ended = threading.Thread(target=lambda: None)
        ended.start()
        ended.join()
        assert set_threads_nice([found["dds.shm.7411"], ended.native_id], nice) is True  # (an ended one skipped)
        assert os.getpriority(os.PRIO_PROCESS, found["dds.shm.7411"]) == nice
        assert os.getpriority(os.PRIO_PROCESS, found["dds.udp.7410"]) != nice or nice == 19
    finally:
        release.set()
        for thread in threads:
            thread.join()
