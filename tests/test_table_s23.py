"""Session 23's new-table fast paths (issue 10): the bind group cache's one-entry groups kept
per buffer (``BindGroupCache.singles_of``/``fill``), a rebase's groups on one allocation looked
up in one map (``_Patch.sole``), evenly spaced sites cycling their groups filled by list
repetition (``_pick``'s ``cycled``, ``_items``'s periodic gathers), rebase_onto's one-entry
table, and the rebased program built without its constructor. Calls are compared with
``compile_plan`` of the rebased plan on the null device, bytes with numpy models on the
shared device (lavapipe in CI).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.backends.protocol import BackendError
from hal.runtime.encoder import BindGroupCache, _items, _period, _pick, compile_plan

DEFAULT_MODE = hal.CommandBufferMode.DEFAULT


def test_picks_equal_the_reference_over_random_sites() -> None:
    """``_pick`` (cycled, spaced, gathered) and ``_items`` (periodic, itemgetter) give the
    reference list (each site's group's new call, the old call elsewhere) over random
    steps: evenly and unevenly spaced sites, groups in turn, repeated in another order,
    at random, with more groups than the step uses."""
    rng = random.Random(23)
    for _ in range(3000):
        count = rng.randint(1, 60)
        groups = rng.randint(1, 9)
        kind = rng.random()
        if kind < 0.5:  # evenly spaced
            step = rng.randint(1, 3)
            positions = list(range(rng.randrange(step), count, step))
        else:
            positions = sorted(rng.sample(range(count), rng.randint(1, count)))
        if not positions:
            continue
        shape = rng.random()
        if shape < 0.4:
            order = [i % groups for i in range(len(positions))]
        elif shape < 0.7:
            base = [rng.randrange(groups) for _ in range(rng.randint(1, groups))]
            order = [base[i % len(base)] for i in range(len(positions))]
        else:
            order = [rng.randrange(groups) for _ in positions]
        sites = dict(zip(positions, order, strict=True))
        calls = [("old", i) for i in range(count)]
        new_calls = [("new", g) for g in range(groups)]
        want = [new_calls[sites[p]] if p in sites else calls[p] for p in range(count)]
        assert list(_pick(count, sites, groups)(calls, new_calls)) == want
        assert list(_items(order)(new_calls)) == [new_calls[g] for g in order]
        period = _period(order)
        assert all(order[i] == order[i - period] for i in range(period, len(order)))
        assert not any(
            all(order[i] == order[i - p] for i in range(p, len(order))) for p in range(1, period)
        )


def _cb(device: hal.Device, n: int, groups: int, slots: int, direct: Any = None) -> Any:
    """n x touch on slot (i % slots) at 256 * (i % groups), a barrier between; with
    ``direct``, every fourth dispatch is of another pipeline followed by a copy from
    ``direct`` into the slot (a transfer site, a pipeline change between group sites)."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    other = device.create_executable(hal.shader_path("noop.wgsl"))
    cb = device.create_command_buffer(DEFAULT_MODE, binding_capacity=slots)
    cb.begin()
    for i in range(n):
        ref = hal.SlotRef(i % slots, 256 * (i % groups), 256)
        if direct is not None and i % 4 == 3:
            cb.dispatch(other, "touch", (1, 1, 1), bindings=[ref])
            cb.execution_barrier()
            cb.copy_buffer(direct, 0, ref, 4, 4)
        else:
            cb.dispatch(noop, "touch", (1, 1, 1), bindings=[ref])
        cb.execution_barrier()
    cb.end()
    return cb


@pytest.mark.parametrize(("n", "groups", "slots"), [(100, 8, 1), (7, 3, 1), (30, 4, 2), (1, 1, 1)])
def test_rebased_calls_equal_compile_plan(
    null: hal.Device, n: int, groups: int, slots: int
) -> None:
    """Over random tables (buffers cycled past the program cache, subspans at shifted
    aligned offsets, fresh buffers, a released buffer's pooled handle), each prepared
    program's calls are those of ``compile_plan`` of the plan rebased onto that table."""
    rng = random.Random(n * 7 + slots)
    direct = null.allocate_buffer(256)
    cb = _cb(null, n, groups, slots, direct if slots == 2 else None)
    pool = [null.allocate_buffer(8192) for _ in range(12)]
    for round_ in range(60):
        table: list[Any] = []
        made: list[hal.Buffer] = []
        for _ in range(slots):
            choice = rng.random()
            if choice < 0.4:
                table.append(rng.choice(pool))
            elif choice < 0.7:
                table.append(hal.BufferRef(rng.choice(pool), rng.choice([0, 256, 1024]), 4096))
            else:
                made.append(null.allocate_buffer(4096))
                table.append(made[-1])
        if len({id(getattr(e, "buffer", e)) for e in table}) < len(table):
            continue  # two slots on one buffer: lowered on its own, not rebased
        got = cb.prepare(table)._program._steps
        want = compile_plan(cb.plan, null.encoding)._steps
        assert [(p, list(c)) for p, c in got] == [(p, list(c)) for p, c in want], round_
        done = null.create_semaphore()
        null.queue_execute(cb, signal=[(done, 1)], binding_table=table)
        done.wait(1, timeout=WAIT)
        for buffer in made:
            buffer.release()
    null.wait_idle(WAIT)


class _Backend:
    """create_bind_group / set_bind_group of a fake backend, failing at ``fail_at``."""

    def __init__(self, fail_at: int = -1) -> None:
        self.made = 0
        self.fail_at = fail_at

    def create_bind_group(self, layout: Any, entries: Any) -> Any:
        if self.made == self.fail_at:
            raise BackendError("no more groups")
        self.made += 1
        return ("group", layout, entries)

    def set_bind_group(self, index: int, group: Any) -> Any:
        return ("set", index, group)


def test_bind_group_cache_singles_fill_and_forget() -> None:
    """One-entry groups are kept per buffer: ``get`` and ``fill`` make each once and find it
    after; a failing ``fill`` keeps the groups it made and raises; ``forget`` drops a
    buffer's groups of one and more entries (made again afterwards); ``clear`` drops all."""
    backend = _Backend()
    cache = BindGroupCache(backend)  # type: ignore[arg-type]
    layout, other = object(), object()
    a, b = object(), object()
    group = cache.get(layout, ((0, a, 256, 256),))
    assert cache.get(layout, ((0, a, 256, 256),)) is group and backend.made == 1
    per = cache.singles_of(id(a))
    assert per is not None and per[(id(layout), 0, 256, 256)][0] is group
    assert per[(id(layout), 0, 256, 256)][3] == ("set", 0, group)
    keys = [(id(layout), 0, 0, 256), (id(layout), 0, 256, 256), (id(other), 1, 0, 16)]
    found: list[Any] = [None, per[keys[1]], None]
    cache.fill(a, [layout, layout, other], keys, found)
    assert backend.made == 3 and all(found)
    assert [entry[0] for entry in found] == [
        ("group", layout, ((0, a, 0, 256),)),
        group,
        ("group", other, ((1, a, 0, 16),)),
    ]
    assert cache.get(other, ((1, a, 0, 16),)) is found[2][0] and backend.made == 3
    two = cache.get(layout, ((0, a, 0, 16), (1, b, 0, 16)))
    assert cache.get(layout, ((0, a, 0, 16), (1, b, 0, 16))) is two
    # A failure part-way: the groups made before it are cached.
    backend.fail_at = backend.made + 1
    found = [None, None]
    with pytest.raises(BackendError):
        cache.fill(b, [layout, layout], [(id(layout), 0, 0, 4), (id(layout), 0, 4, 4)], found)
    assert found[0] is not None and found[1] is None
    assert cache.get(layout, ((0, b, 0, 4),)) is found[0][0]
    backend.fail_at = -1
    made = backend.made
    cache.forget(a)
    assert cache.singles_of(id(a)) is None and cache.singles_of(id(b)) is not None
    assert cache.get(layout, ((0, a, 256, 256),)) is not group
    assert cache.get(layout, ((0, a, 0, 16), (1, b, 0, 16))) is not two
    assert backend.made == made + 2
    cache.clear()
    assert cache.singles_of(id(a)) is None and cache.singles_of(id(b)) is None


def test_fresh_buffers_make_their_groups_once_and_forget_them(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh buffer's table makes its 8 groups in one fill; submitting it again makes none;
    after its release its groups are gone from the cache (before its handle is pooled)."""
    cb = _cb(null, 100, 8, 1)
    backend = null.backend
    made: list[Any] = []
    create = backend.create_bind_group

    def counted(layout: Any, entries: Any) -> Any:
        made.append(entries)
        return create(layout, entries)

    cache = null.encoding.bind_groups
    first = null.allocate_buffer(4096)
    done = null.create_semaphore()
    null.queue_execute(cb, signal=[(done, 1)], binding_table=[first])  # the template
    done.wait(1, timeout=WAIT)
    monkeypatch.setattr(backend, "create_bind_group", counted)
    value = 1
    for _ in range(10):
        buffer = null.allocate_buffer(4096)
        handle = buffer.allocation.handle
        for _ in range(2):
            value += 1
            null.queue_execute(cb, signal=[(done, value)], binding_table=[buffer])
            done.wait(value, timeout=WAIT)
        assert len(made) == 8 and {e[0][1] for e in made} == {handle}
        assert sorted(e[0][2] for e in made) == [256 * i for i in range(8)]
        per = cache.singles_of(id(handle))
        assert per is not None and len(per) == 8
        made.clear()
        buffer.release()
        null.wait_idle(WAIT)
        assert cache.singles_of(id(handle)) is None


def test_cycled_groups_on_fresh_and_shifted_tables_in_flight(device: hal.Device) -> None:
    """100 touches cycling 8 groups, submitted without waits on fresh buffers, shifted
    subspans and buffers released and allocated again (pooled handles): each buffer counts
    exactly its own submissions' touches."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    cb = device.create_command_buffer(DEFAULT_MODE, binding_capacity=1)
    cb.begin()
    for i in range(100):
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[hal.SlotRef(0, 256 * (i % 8), 256)])
        cb.execution_barrier()
    cb.end()
    done = device.create_semaphore()
    for round_ in range(3):
        runs: list[tuple[hal.Buffer, int]] = []
        for index in range(12):
            buffer = device.allocate_buffer(4096 + 1024)
            base = [0, 256, 1024][index % 3]
            entry = buffer if base == 0 else hal.BufferRef(buffer, base, 4096)
            for _ in range(1 + index % 2):
                device.queue_execute(cb, binding_table=[entry])
            runs.append((buffer, base))
        device.queue_barrier(signal=[(done, round_ + 1)])
        done.wait(round_ + 1, timeout=WAIT)
        for index, (buffer, base) in enumerate(runs):
            words = np.zeros(buffer.byte_length // 4, np.uint32)
            for i in range(100):
                words[(base + 256 * (i % 8)) // 4] += 1 + index % 2
            np.testing.assert_array_equal(buffer.to_numpy(np.uint32), words, err_msg=f"{round_}")
            buffer.release()
