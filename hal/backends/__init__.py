"""WebGPU implementations behind one small protocol (:mod:`hal.backends.protocol`).

This package is the only place that imports wgpu. :func:`adapters` lists what an
implementation can open; :func:`open_backend` opens one of its adapters as a
:class:`~hal.backends.protocol.Backend`. Implementations: "wgpu-native" (wgpu-py, the
default), "dawn" (Chrome's Dawn through the optional ``wgpudawn`` package) and "null".
"""

from __future__ import annotations

from collections.abc import Sequence

from hal.backends.protocol import AdapterDescription, Backend, BackendError

__all__ = [
    "DEFAULT_IMPLEMENTATION",
    "GPU_IMPLEMENTATIONS",
    "IMPLEMENTATIONS",
    "adapters",
    "open_backend",
]

DEFAULT_IMPLEMENTATION = "wgpu-native"
GPU_IMPLEMENTATIONS = ("wgpu-native", "dawn")
"""The implementations that run on a GPU (what ``python -m hal devices`` lists)."""
IMPLEMENTATIONS = (*GPU_IMPLEMENTATIONS, "null")
"""Implementation names :func:`adapters` accepts ("null": no GPU, see hal.backends.null)."""


def adapters(implementation: str) -> list[AdapterDescription]:
    """The adapters of ``implementation``. BackendError when it is unknown or cannot load
    (for "dawn": when wgpudawn is not installed, with the command that installs it)."""
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
    if implementation == "dawn":
        from hal.backends.dawn import dawn_adapters

        return dawn_adapters()
    raise BackendError(
        f"unknown WebGPU implementation {implementation!r} (known: {', '.join(IMPLEMENTATIONS)})"
    )


def open_backend(adapter: AdapterDescription, features: Sequence[str], label: str) -> Backend:
    """Open a device on ``adapter`` with ``features``. BackendError on failure."""
    if adapter.implementation == "null":
        from hal.backends.null import NullBackend

        return NullBackend.open(adapter, features, label)
    if adapter.implementation == "dawn":
        from hal.backends.dawn import DawnBackend

        return DawnBackend.open(adapter, features, label)
    from hal.backends.wgpu_native import WgpuNativeBackend

    return WgpuNativeBackend.open(adapter, features, label)
