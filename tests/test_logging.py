"""The ``hal`` logger: debug records for held-back and released submissions, lowering
decisions, staging and device loss; a warning for a dispatch that passes no constants to a
kernel that declares some; ``HAL_LOG`` turns them on to stderr."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hal

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 30


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="hal")
    return caplog


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hal" and r.levelno == level]


def test_the_logger_is_the_standard_one() -> None:
    assert hal.log.logger is logging.getLogger("hal")


def test_held_back_and_released_submissions(
    device: hal.Device, debug: pytest.LogCaptureFixture
) -> None:
    buf = device.allocate_buffer(64)
    gate, done = device.create_semaphore(), device.create_semaphore()
    device.queue_fill(buf, 0, 64, 0x11, 1, wait=[(gate, 1)], signal=[(done, 1)])
    held = [m for m in _messages(debug) if m.startswith("queue: submission held back")]
    assert len(held) == 1 and "<hal.Semaphore 0>" in held[0]
    assert not [m for m in _messages(debug) if "released" in m]
    gate.signal(1)
    done.wait(1, timeout=TIMEOUT)
    released = [m for m in _messages(debug) if "held-back submission(s) released" in m]
    assert released == ["queue: 1 held-back submission(s) released by <hal.Semaphore 1>"]
    assert bytes(buf.to_numpy()) == b"\x11" * 64


def test_one_lowering_record_per_end(device: hal.Device, debug: pytest.LogCaptureFixture) -> None:
    a, b = device.allocate_buffer(256), device.allocate_buffer(256)
    with device.record() as cb:
        cb.fill_buffer(a, 0, 256, 1)
        cb.copy_buffer(a, 0, b, 3, 200)
    lowered = [m for m in _messages(debug) if m.startswith("lowering:")]
    assert len(lowered) == 1
    assert lowered[0].startswith("lowering: 2 segments -> PlanStats(")
    assert f"[costs {device.caps.costs.name}]" in lowered[0]


def test_staging_records(device: hal.Device, debug: pytest.LogCaptureFixture) -> None:
    from hal.runtime.staging import WRITE_BUFFER_MAX

    n = WRITE_BUFFER_MAX + 4096
    data = np.arange(n, dtype=np.uint8)
    buf = device.buffer_from_numpy(data)
    np.testing.assert_array_equal(buf.to_numpy(), data)
    staged = [m for m in _messages(debug) if m.startswith("staging:")]
    assert any(m.startswith(f"staging: upload of {n} bytes") for m in staged), staged
    assert any(m.startswith(f"staging: readback of {n} bytes") for m in staged), staged


def test_device_loss_record(debug: pytest.LogCaptureFixture) -> None:
    from hal.backends.protocol import BackendError
    from hal.runtime.loss import backend_failure

    class _Queue:
        def mark_lost(self, reason: str) -> hal.UnavailableError:
            return hal.UnavailableError(f"the device was lost: {reason}")

    error = backend_failure(_Queue(), "queue_execute", BackendError("gone", lost=True))  # type: ignore[arg-type]
    assert isinstance(error, hal.UnavailableError)
    assert _messages(debug) == ["device lost in queue_execute: gone"]


def test_missing_constants_warn_once(device: hal.Device, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hal")
    source = (
        "struct C { n: u32, scale: f32 }\nvar<immediate> c: C;\n"
        "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n"
        "@compute @workgroup_size(1) fn main() { y[0] = c.scale + f32(c.n); }\n"
    )
    ex = device.create_executable(source, label="warn-consts")
    buf = device.allocate_buffer(16)
    with device.record() as cb:
        cb.dispatch(ex, "main", (1, 1, 1), bindings=[buf])
        cb.dispatch(ex, "main", (1, 1, 1), bindings=[buf])  # once per kernel, not per call
        cb.dispatch(ex, "main", (1, 1, 1), constants=[1, 2.0], bindings=[buf])
    warnings = _messages(caplog, logging.WARNING)
    assert warnings == [
        "dispatch: 'main' of 'warn-consts' declares 8 bytes of dispatch constants "
        "(var<immediate>) but the dispatch passes none: they read 0"
    ]


def test_quiet_by_default_and_cheap_when_off(device: hal.Device) -> None:
    logger = logging.getLogger("hal")
    if os.environ.get("HAL_LOG"):
        pytest.skip("HAL_LOG is set for this run")
    assert not logger.isEnabledFor(logging.DEBUG)
    calls: list[logging.LogRecord] = []
    original = logger.handle
    logger.handle = calls.append  # type: ignore[assignment,method-assign]
    try:
        buf = device.allocate_buffer(64)
        gate = device.create_semaphore()
        device.queue_fill(buf, 0, 64, 1, wait=[(gate, 1)])
        gate.signal(1)
        with device.record() as cb:
            cb.fill_buffer(buf, 0, 64, 2)
        device.wait_idle(TIMEOUT)
    finally:
        logger.handle = original  # type: ignore[method-assign]
    assert calls == []


def test_hal_log_env_attaches_a_stderr_handler(tmp_path: Path) -> None:
    code = (
        "import logging, hal\n"
        "d = hal.create_device()\n"
        "b = d.allocate_buffer(16); s = d.create_semaphore()\n"
        "d.queue_fill(b, 0, 16, 1, wait=[(s, 1)], signal=[(s, 2)]); s.signal(1); s.wait(2, 30)\n"
        "import hal.log; hal.log.configure_from_env(); hal.log.configure_from_env()\n"
        "print(len(logging.getLogger('hal').handlers))\n"
    )
    env = {
        **os.environ,
        "HAL_LOG": "debug",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # one handler however often it is configured
    assert "hal DEBUG [MainThread] queue: submission held back on" in done.stderr
    assert "held-back submission(s) released" in done.stderr
    env["HAL_LOG"] = "verbose"
    done = subprocess.run(
        [sys.executable, "-c", "import hal"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "HAL_LOG='verbose' ignored (choose from debug, info, warning)" in done.stderr
