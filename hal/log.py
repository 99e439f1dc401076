"""hal's diagnostics: the standard logger ``logging.getLogger("hal")``.

Debug records say when a submission is held back on its semaphores and when it is released, what
the lowering decided for a command buffer, when a transfer goes through staging buffers and
when a device is lost; warnings flag likely mistakes (a kernel that declares dispatch constants
dispatched with none). Every debug record is guarded by ``logger.isEnabledFor``, so with
logging off they cost one check. ``HAL_LOG=debug`` (or ``info``, ``warning``) in the
environment attaches a stderr handler at ``import hal``; otherwise configure ``logging`` as
usual (``logging.getLogger("hal").setLevel(logging.DEBUG)``).
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["ENV", "LEVELS", "configure_from_env", "logger"]

logger = logging.getLogger("hal")
"""The ``hal`` logger; every hal module logs through it (or a child of it)."""

ENV = "HAL_LOG"
"""The environment variable that turns hal's logging on to stderr."""

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
"""The values ``HAL_LOG`` takes."""

_FORMAT = "hal %(levelname)s [%(threadName)s] %(message)s"


def configure_from_env(value: str | None = None) -> logging.Handler | None:
    """Apply ``HAL_LOG`` (or ``value``): set the ``hal`` logger's level and attach one stderr
    handler (once, however often this runs); returns that handler, or None when the
    variable is unset or empty. An unknown value is reported once on stderr and ignored
    (import never fails over it)."""
    text = (os.environ.get(ENV, "") if value is None else value).strip().lower()
    if not text:
        return None
    level = LEVELS.get(text)
    if level is None:
        print(f"hal: {ENV}={text!r} ignored (choose from {', '.join(LEVELS)})", file=sys.stderr)
        return None
    logger.setLevel(level)
    for handler in logger.handlers:
        if getattr(handler, "_hal_env", False):
            handler.setLevel(level)
            return handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    handler._hal_env = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    return handler
