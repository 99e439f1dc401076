"""WebGPU implementations behind one small protocol (:mod:`hal.backends.protocol`).

This package is the only place that imports wgpu. :func:`adapters` lists what an
implementation can open; :func:`open_backend` opens one of its adapters as a
:class:`~hal.backends.protocol.Backend`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hal.backends.protocol import AdapterDescription, Backend, BackendError

__all__ = ["DEFAULT_IMPLEMENTATION", "IMPLEMENTATIONS", "adapters", "open_backend"]

DEFAULT_IMPLEMENTATION = "wgpu-native"
IMPLEMENTATIONS = ("wgpu-native", "null")
"""Implementation names :func:`adapters` accepts ("null": no GPU, see hal.backends.null)."""


def adapters(implementation: str) -> list[AdapterDescription]:
    """The adapters of ``implementation``. BackendError when it is unknown or cannot load."""
    if implementation == "null":
        from hal.backends.null import null_adapter

        return [null_adapter()]
    if implementation == "wgpu-native":
        try:
            import wgpu

            from hal.backends.wgpu_py import describe_adapters
        except ImportError as error:
            raise BackendError(f"wgpu-py is not installed: {error}") from None
        return describe_adapters(wgpu.gpu, implementation)
    raise BackendError(
        f"unknown WebGPU implementation {implementation!r} (known: {', '.join(IMPLEMENTATIONS)})"
    )


def open_backend(adapter: AdapterDescription, features: Sequence[str], label: str) -> Backend:
    """Open a device on ``adapter`` with ``features``. BackendError on failure."""
    if adapter.implementation == "null":
        from hal.backends.null import NullBackend

        return NullBackend.open(adapter, features, label)
    from hal.backends.wgpu_native import WgpuNativeBackend

    return WgpuNativeBackend.open(adapter, features, label)
