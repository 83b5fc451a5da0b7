"""Shared memory for the large arrays of a frame on their way to the tracker process (no rclpy, no torch).

Through the pipe, a 640x480 RGB-D frame (colour 0.9 MB, depth 1.2 MB) is pickled, written in 64 KiB pieces,
read back and unpickled: measured 7.5 ms of the node's CPU and 16 ms of the tracker process's per frame, and a
context switch per piece on a busy machine (``docs/node_runtime.md``). Here the node writes the arrays into a
``multiprocessing.shared_memory`` segment (one copy) and sends only a small :class:`SharedArrays` descriptor
through the pipe; the tracker process copies them out (one copy: the tracker may keep what it is given).

:class:`FrameRing` (the node, the writer) owns the segment: ``slots`` equal slots used round-robin, the newest
write wins: the writer never waits for the reader. Each slot starts with a sequence number (seqlock): 0 while
the writer fills it, then the write's number, which the descriptor carries. :class:`FrameRingReader` (the tracker
process) checks it before and after its copy and raises :class:`SlotOverwritten` when a newer frame took the slot
(never with the node's synchronous calls: a slot is rewritten ``slots`` calls later, long after its reply).
A frame larger than a slot makes the writer create a new, larger segment (the reader maps it by its new name).
With the node's overlapped worker (one frame in the tracker process, the next one written ahead of its turn),
:meth:`FrameRing.write` is told which writes must stay readable (``keep``): it never reuses their slots, and a
segment one of them lies in is unlinked only once none does.

    ring = FrameRing()                      # node
    shared = ring.write([rgb, depth])       # -> SharedArrays (pickled through the pipe)
    reader = FrameRingReader()              # tracker process
    rgb, depth = reader.read(shared)        # copies
    ring.close()                            # unlinks the segment
"""

from __future__ import annotations

import dataclasses
import struct
import sys
from collections.abc import Sequence
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from handypriors_core.errors import HandyPriorsError

__all__ = ["FrameRing", "FrameRingReader", "SharedArrays", "SlotOverwritten"]

_SEQUENCE = struct.Struct("<Q")  # slot header: sequence number (0 = being written)
_ALIGN = 64  # array offsets in a slot (cache line; every dtype's alignment)
_DEFAULT_SLOT_BYTES = 4 << 20  # a 640x480 colour + depth + mask frame (3.4 MB) fits


class SlotOverwritten(HandyPriorsError):
    """A newer frame took the slot before the reader copied it out (newest wins)."""


@dataclasses.dataclass(frozen=True)
class SharedArrays:
    """Where one write's arrays lie: segment ``name``, slot ``offset`` [bytes], write ``sequence`` number, and per
    array ``(offset in the slot [bytes], dtype string, shape)``."""

    name: str
    offset: int
    sequence: int
    arrays: tuple[tuple[int, str, tuple[int, ...]], ...]


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


class FrameRing:
    """The writer: a segment of ``slots`` slots of at least ``slot_bytes`` bytes each (grown on demand)."""

    def __init__(self, slot_bytes: int = _DEFAULT_SLOT_BYTES, slots: int = 2) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.slot_bytes = 0
        self._memory: shared_memory.SharedMemory | None = None
        self._retired: list[shared_memory.SharedMemory] = []  # replaced segments a kept write still lies in
        self._next_slot = 0
        self._sequence = 0
        self._allocate(slot_bytes)

    def _allocate(self, slot_bytes: int, keep: Sequence[SharedArrays] = ()) -> None:
        if self._memory is not None and any(shared.name == self._memory.name for shared in keep):
            self._retired.append(self._memory)  # (unlinked once no kept write lies in it)
            self._memory = None
        self._close_current()
        self.slot_bytes = _aligned(max(slot_bytes, _SEQUENCE.size + _ALIGN))
        self._memory = shared_memory.SharedMemory(create=True, size=self.slot_bytes * self.slots)
        self._next_slot = 0

    @property
    def name(self) -> str:
        """The current segment's name (changes when a frame needs larger slots)."""
        return self._memory.name if self._memory is not None else ""

    def write(self, arrays: Sequence[np.ndarray], keep: Sequence[SharedArrays | None] = ()) -> SharedArrays:
        """Copy ``arrays`` into the next slot that no write of ``keep`` (still to be read) lies in; returns their
        descriptor. Raises ValueError when every slot is kept."""
        kept = [shared for shared in keep if shared is not None]
        self._release_retired(kept)
        layout, size = [], _ALIGN  # (the sequence number takes the first cache line)
        for array in arrays:
            layout.append((size, array.dtype.str, tuple(array.shape)))
            size += _aligned(array.nbytes)
        if size > self.slot_bytes or self._memory is None:
            self._allocate(max(size, 2 * self.slot_bytes), kept)
        buffer = self._memory.buf
        taken = {shared.offset for shared in kept if shared.name == self._memory.name}
        free = [slot for slot in range(self.slots) if slot * self.slot_bytes not in taken]
        if not free:
            raise ValueError(f"all {self.slots} slots hold frames still to be read")
        slot = min(free, key=lambda s: (s - self._next_slot) % self.slots)  # round-robin among the free ones
        offset = slot * self.slot_bytes
        self._next_slot = (slot + 1) % self.slots
        self._sequence += 1
        _SEQUENCE.pack_into(buffer, offset, 0)
        for array, (start, dtype, shape) in zip(arrays, layout):
            np.ndarray(shape, dtype, buffer, offset + start)[...] = array
        _SEQUENCE.pack_into(buffer, offset, self._sequence)
        return SharedArrays(self.name, offset, self._sequence, tuple(layout))

    def _release_retired(self, kept: Sequence[SharedArrays]) -> None:
        names = {shared.name for shared in kept}
        for memory in [m for m in self._retired if m.name not in names]:
            self._retired.remove(memory)
            _close_and_unlink(memory)

    def _close_current(self) -> None:
        memory, self._memory = self._memory, None
        if memory is not None:
            _close_and_unlink(memory)

    def close(self) -> None:
        """Release and unlink the segment(s) (idempotent)."""
        self._close_current()
        self._release_retired(())


def _close_and_unlink(memory: shared_memory.SharedMemory) -> None:
    memory.close()
    try:
        memory.unlink()
    except FileNotFoundError:
        pass


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Map the segment ``name`` without registering it with this process's resource tracker: the writer owns it
    (Python < 3.13 registers every attached segment and unlinks it when the attaching process ends; unregistering
    afterwards would also drop the writer's registration when both live in one process, as in the tests)."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name, track=False)
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None  # (single-threaded use: the reader's attach only)
    try:
        return shared_memory.SharedMemory(name)
    finally:
        resource_tracker.register = register


class FrameRingReader:
    """The reader: maps the writer's segment by name (once per segment) and copies arrays out of it."""

    def __init__(self) -> None:
        self._memory: shared_memory.SharedMemory | None = None

    def _attach(self, name: str) -> shared_memory.SharedMemory:
        if self._memory is None or self._memory.name != name:
            self.close()
            self._memory = _attach_untracked(name)
        return self._memory

    def read(self, shared: SharedArrays) -> list[np.ndarray]:
        """Copies of the arrays of ``shared``; raises :class:`SlotOverwritten` when a newer write took the slot."""
        buffer = self._attach(shared.name).buf

        def current() -> bool:
            return _SEQUENCE.unpack_from(buffer, shared.offset)[0] == shared.sequence

        if not current():
            raise SlotOverwritten(f"frame {shared.sequence} was overwritten by a newer one before it was read")
        out = [np.ndarray(shape, dtype, buffer, shared.offset + start).copy() for start, dtype, shape in shared.arrays]
        if not current():
            raise SlotOverwritten(f"frame {shared.sequence} was overwritten by a newer one while it was read")
        return out

    def close(self) -> None:
        memory, self._memory = self._memory, None
        if memory is not None:
            memory.close()
