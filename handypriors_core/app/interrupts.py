"""Ctrl-C and SIGTERM during a command: stop cleanly, and never leave half an output file.

``sigterm_as_interrupt()`` makes SIGTERM (a service manager, ``timeout``, ``kill``) raise ``KeyboardInterrupt``
like Ctrl-C does, so one code path (``run_track``'s) writes what is done. ``deferred_interrupts()`` holds
SIGINT / SIGTERM back while an output file is written and raises ``KeyboardInterrupt`` once it is complete.
Both only act in the main thread (Python delivers signals there) and restore the previous handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["deferred_interrupts", "sigterm_as_interrupt"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises ``KeyboardInterrupt`` (as SIGINT does)."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Inside the block SIGINT / SIGTERM are recorded, not raised; ``KeyboardInterrupt`` follows the block."""
    if not _in_main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(f"signal {signal.Signals(received[0]).name} (after the output was written)")
