"""Events: split barriers inside a command buffer (``signal_event``/``wait_events``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hal.runtime.device import Device

__all__ = ["Event"]


class Event:
    """An event created by ``device.create_event()``. It has no host-visible state: the
    lowering orders a ``wait_events`` like an execution barrier."""

    __slots__ = ("__weakref__", "device")

    def __init__(self, device: Device) -> None:
        self.device = device

    def __repr__(self) -> str:
        return f"<hal.Event {id(self):#x}>"
