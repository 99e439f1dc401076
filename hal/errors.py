"""HAL error classes, one per IREE status code.

Each class also derives from the closest builtin exception so ordinary Python code can catch
it (``except ValueError`` catches :class:`InvalidArgumentError`).
"""

from __future__ import annotations

__all__ = [
    "AbortedError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "HalError",
    "InvalidArgumentError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnavailableError",
    "UnimplementedError",
]


class HalError(Exception):
    """Base class of every error the HAL raises."""


class InvalidArgumentError(HalError, ValueError):
    """A malformed argument: bad pattern, misalignment, overlap, bad WGSL, wrong bindings."""


class OutOfRangeError(HalError, IndexError):
    """A range past the end of a buffer, subspan, host source, slot or binding table."""


class PermissionDeniedError(HalError, PermissionError):
    """A buffer lacks the usage, access or memory type that an operation needs."""


class FailedPreconditionError(HalError, RuntimeError):
    """An operation in the wrong state: outside begin/end, resubmission, released object."""


class ResourceExhaustedError(HalError, MemoryError):
    """An allocation or staging request beyond the device's limits."""


class DeadlineExceededError(HalError, TimeoutError):
    """A wait did not complete before its timeout."""


class AbortedError(HalError, RuntimeError):
    """Waiting on or querying a failed semaphore.

    The original failure is ``__cause__`` and also ``.status``.
    """

    def __init__(self, message: str, status: BaseException | None = None) -> None:
        super().__init__(message)
        self.status = status
        if status is not None:
            self.__cause__ = status


class UnavailableError(HalError, RuntimeError):
    """The device is lost or closed."""


class UnimplementedError(HalError, NotImplementedError):
    """A feature the adapter lacks."""
