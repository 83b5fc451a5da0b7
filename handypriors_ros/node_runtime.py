"""Shared ``main()`` boilerplate of the package's nodes, and a parameter-declaration helper.

``run_node(factory)`` initialises rclpy (which parses ``--ros-args`` from ``sys.argv`` and installs the
SIGINT/SIGTERM handlers), builds the node, spins it and always shuts down. Exit codes:

- 0: the node finished, or was stopped by Ctrl-C / SIGINT / SIGTERM (``KeyboardInterrupt`` and rclpy's
  ``ExternalShutdownException``; also the ``RCLError`` that a shutdown race occasionally raises from the wait
  set once the context is no longer valid);
- 2: the node could not start because of bad parameters or inputs (a typed core error or an rclpy parameter
  exception), or stopped on bad input (a typed core error escaping the spin), reported as one log line
  without a traceback.

Anything else propagates (a traceback and exit 1), as a bug should.

Once the node stops (first SIGINT / SIGTERM, or the end of its work), further SIGINT / SIGTERM are ignored
until the process ends: ``ros2 launch`` sends SIGINT to the group and then its own SIGINT / SIGTERM, which
must not interrupt ``destroy_node`` with a ``KeyboardInterrupt`` traceback and exit code -2.

    def main(args=None):
        exit_process(run_node(MyNode, args))
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException

from handypriors_core.errors import HandyPriorsError

__all__ = ["EXIT_BAD_CONFIG", "EXIT_OK", "declare_parameter", "exit_process", "ignore_stop_signals",
           "name_os_thread", "profiled_thread", "run_node"]

#: Environment variable: a folder where each node thread wrapped in :func:`profiled_thread` writes its cProfile
#: statistics (``<name>.prof``) when it ends (read them with ``python -m pstats``). Unset: no profiling.
PROFILE_DIR_VARIABLE = "HANDYPRIORS_PROFILE_DIR"

EXIT_OK = 0
EXIT_BAD_CONFIG = 2

try:  # the exception type of a shutdown race inside the wait set (see module docstring)
    from rclpy._rclpy_pybind11 import RCLError as _RCLError  # type: ignore
except ImportError:  # pragma: no cover - other rclpy builds
    _RCLError = RuntimeError


def run_node(
    node_factory: Callable[[], Any],
    args: Sequence[str] | None = None,
    spin: Callable[[Any], None] | None = None,
    logger_name: str = "handypriors",
) -> int:
    """Init rclpy with ``args`` (``None`` = ``sys.argv``), build ``node_factory()``, spin, shut down.

    ``spin(node)`` replaces ``rclpy.spin(node)`` for nodes that finish on their own (e.g. a player that
    returns when its sequence ends). Returns the exit code (see the module docstring).
    """
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = node_factory()
        except (HandyPriorsError, ParameterException) as exc:
            rclpy.logging.get_logger(logger_name).error(f"cannot start: {exc}")
            return EXIT_BAD_CONFIG
        try:
            with profiled_thread("executor"):
                if spin is None:
                    rclpy.spin(node)
                else:
                    spin(node)
        except HandyPriorsError as exc:  # bad input met while running (e.g. an unreadable file)
            rclpy.logging.get_logger(logger_name).error(f"stopped: {exc}")
            return EXIT_BAD_CONFIG
        return EXIT_OK
    except (KeyboardInterrupt, ExternalShutdownException):
        return EXIT_OK
    except _RCLError:
        if rclpy.ok():
            raise
        return EXIT_OK
    except Exception as exc:
        if caused_by_stop(exc):
            return EXIT_OK
        raise
    finally:
        ignore_stop_signals()
        if node is not None:
            with contextlib.suppress(Exception):  # the context may already be gone after a signal
                node.destroy_node()
        rclpy.try_shutdown()
        ignore_stop_signals()  # rclpy.try_shutdown restores the handlers it replaced


def caused_by_stop(exc: BaseException) -> bool:
    """True when ``exc`` or an exception in its chain is a stop (KeyboardInterrupt, external shutdown).

    pybind11 turns a KeyboardInterrupt raised in Python code that rclpy's C++ calls back (a message constructor
    inside ``deserialize_message``, say) into a ``TypeError`` whose cause is the interrupt: a stop, not a crash.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (KeyboardInterrupt, ExternalShutdownException)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (shutdown is under way); a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_IGN)


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` once :func:`run_node` has shut rclpy down, skipping interpreter finalisation.

    During finalisation a middleware thread (Fast DDS listener) that calls back into Python is stopped with a
    forced unwind, which C++ code that catches everything turns into ``FATAL: exception not rethrown`` and an
    abort (seen rarely after SIGINT under load). Nothing is left to clean up at that point, so the process exits
    directly after flushing its output. Every node's ``main`` (console script and ``python -m``) ends with it.
    """
    ignore_stop_signals()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def declare_parameter(
    node: Any,
    name: str,
    default: Any,
    description: str,
    *,
    floating_range: tuple[float, float] | None = None,
    integer_range: tuple[int, int] | None = None,
    read_only: bool = False,
) -> Any:
    """Declare ``name`` with a typed ``default``, a description and an optional range; return its value.

    The type comes from ``default`` (so ``-p rate:=1`` for a float parameter is rejected by rclpy with a
    clear message); out-of-range values are rejected by rclpy at declaration and on later sets.
    """
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if floating_range is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(floating_range[0]), to_value=float(floating_range[1]), step=0.0)
        ]
    if integer_range is not None:
        descriptor.integer_range = [IntegerRange(from_value=int(integer_range[0]), to_value=int(integer_range[1]),
                                                 step=1)]
    return node.declare_parameter(name, default, descriptor).value


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (at most 15 bytes) as its Linux thread name, so that ``top -H``, ``ps -L``
    and ``/proc/<pid>/task/<tid>/comm`` tell the node's threads apart (the benchmark sums CPU per thread by it).
    A no-op where ``prctl`` is missing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def profiled_thread(name: str) -> Iterator[None]:
    """Profile the calling thread with cProfile while the block runs when ``$HANDYPRIORS_PROFILE_DIR`` is set,
    writing ``<dir>/<name>.prof`` at its end (where a node's CPU goes: ``docs/node_runtime.md``)."""
    directory = os.environ.get(PROFILE_DIR_VARIABLE)
    if not directory:
        yield
        return
    import cProfile
    from pathlib import Path

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        Path(directory).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(directory) / f"{name}.prof"))
