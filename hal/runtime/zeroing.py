"""Zero-initialisation of new buffers, ordered before any other use on the queue.

Clearing also defeats a wgpu-native bug: writes through dynamic-offset bindings to a
never-initialised buffer are lost (see ../shared/notes/wgpu-facts.md).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.runtime.buffer import Allocation

__all__ = ["PendingClears"]


class PendingClears:
    """Buffers to clear before the next submission (taken under the queue's submit lock, so
    no other thread's work on them can be submitted before their clear)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, int, Allocation | None]] = []

    def add(self, allocation: Allocation, offset: int = 0) -> None:
        """Clear a new allocation's backend buffer from ``offset`` (a multiple of 4; 0: all
        of it) to its end before anything else touches it (held until then)."""
        allocation.acquire()
        with self._lock:
            self._pending.append((allocation.handle, offset, allocation))

    def add_internal(self, handle: Any) -> None:
        """Clear an internal backend buffer before its first use."""
        with self._lock:
            self._pending.append((handle, 0, None))

    def take(self) -> tuple[Any, list[Allocation]]:
        """(a command buffer clearing every pending buffer or None, their allocations to
        retire once it was submitted)."""
        if not self._pending:
            # Nothing pending (nearly every submission): no lock. A clear added before
            # this submission was made (the allocation happened before it, on this thread
            # or one it synchronised with) is seen; one racing with it belongs to a buffer
            # this submission cannot use yet.
            return None, []
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return None, []
        command_buffer = self._backend.clear_command_buffer([(h, off) for h, off, _ in pending])
        return command_buffer, [a for _, _, a in pending if a is not None]
