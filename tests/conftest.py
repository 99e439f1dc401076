"""Shared fixtures: one real wgpu device per session (lavapipe in CI), helpers for byte checks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

import hal

WAIT = 60.0
"""Seconds any test waits for the GPU before failing instead of hanging."""


@pytest.fixture(scope="session")
def device() -> Iterator[hal.Device]:
    """The default device, with native immediates where the adapter has them."""
    with hal.create_device() as dev:
        yield dev


@pytest.fixture(scope="session")
def device_no_immediates() -> Iterator[hal.Device]:
    """A device that pretends the adapter lacks immediates: constants go through the
    staged-uniform fallback and kernels are rewritten."""
    old = os.environ.get("HAL_DISABLE_FEATURES")
    os.environ["HAL_DISABLE_FEATURES"] = "immediates"
    try:
        dev = hal.create_device()
    finally:
        if old is None:
            del os.environ["HAL_DISABLE_FEATURES"]
        else:
            os.environ["HAL_DISABLE_FEATURES"] = old
    assert not dev.caps.immediates
    with dev:
        yield dev


def random_bytes(size: int, seed: int = 0) -> np.ndarray:
    """``size`` random bytes with no zeros (so untouched bytes are visible)."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size, dtype=np.uint8)


def submit_and_wait(device: hal.Device, cb: hal.CommandBuffer, binding_table=None) -> None:
    """Submit ``cb`` and block (bounded) until the GPU finished it."""
    semaphore = device.create_semaphore()
    device.queue_execute(cb, signal=[(semaphore, 1)], binding_table=binding_table)
    semaphore.wait(1, timeout=WAIT)
