"""Device loss as the runtime sees it: backend errors that say so, and what they strand.

Backends report loss explicitly (``BackendError.lost``, ``Backend.probe_lost``); the queue
then fails held-back and in-flight work and every later operation raises UnavailableError.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hal.errors import HalError, InvalidArgumentError

if TYPE_CHECKING:
    from hal.backends.protocol import BackendError
    from hal.runtime.queue import Queue

__all__ = ["backend_failure"]


def backend_failure(queue: Queue, what: str, error: BackendError) -> HalError:
    """The HalError for a backend error that escaped from ``what``: UnavailableError (and the
    device marked lost) when the device is lost, else InvalidArgumentError."""
    if error.lost:
        logging.getLogger("hal").debug("device lost in %s: %s", what, error)
        return queue.mark_lost(f"{what}: {error}")
    return InvalidArgumentError(f"{what}: wgpu rejected it: {error}")
