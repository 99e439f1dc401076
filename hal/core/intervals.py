"""Painted byte ranges: the interval structure behind the lowering's conflict analysis.

:class:`PaintedRanges` keeps disjoint half-open ranges ``[start, end)`` of one allocation,
each holding the value (an item index) last painted over it. Values are painted in
increasing order, so a range's value is the latest painter's. Two operations, each
O(log n) plus the ranges it removes:

* :meth:`PaintedRanges.paint` overwrites ``[start, end)`` with a new, larger value;
* :meth:`PaintedRanges.take` returns the largest value over ``[start, end)`` and removes the
  ranges it looked at. The caller only ever asks for values above a running maximum that
  the answer raises, so what ``take`` saw can never matter again: each painted range is
  looked at once, and the total work is linear in the paints.

The ranges live in blocks of at most ``2 * _LOAD`` (three parallel lists per block), so an
insertion in the middle moves a block, not every range of the allocation.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["PaintedRanges"]

_LOAD = 128
"""Ranges per block after a split; a block splits when it reaches twice this."""


class PaintedRanges:
    """Disjoint ranges of one allocation, each with the latest value painted over it.

    Empty ranges (``start >= end``) are ignored by both operations: they touch no byte.
    Nothing raises.
    """

    __slots__ = ("_ends", "_last", "_starts", "_values", "top")

    def __init__(self) -> None:
        # Block k holds ranges (_starts[k][i], _ends[k][i]) -> _values[k][i], sorted and
        # disjoint across blocks too; _last[k] is the end of block k's last range.
        self._starts: list[list[int]] = []
        self._ends: list[list[int]] = []
        self._values: list[list[int]] = []
        self._last: list[int] = []
        self.top = -1
        """The last value painted (the largest ever): a caller holding a larger running
        maximum can skip :meth:`take`."""

    def __len__(self) -> int:
        return sum(len(block) for block in self._starts)

    def ranges(self) -> list[tuple[int, int, int]]:
        """Every (start, end, value), in address order (for tests and dumps)."""
        return [
            (s, e, v)
            for starts, ends, values in zip(self._starts, self._ends, self._values, strict=True)
            for s, e, v in zip(starts, ends, values, strict=True)
        ]

    def take(self, start: int, end: int) -> int:
        """The largest value painted over any byte of ``[start, end)`` (-1 if none); the
        ranges overlapping it are removed."""
        last = self._last
        if start >= end or not last or start >= last[-1]:
            return -1
        k = bisect_right(last, start)
        starts = self._starts[k]
        if starts[bisect_right(self._ends[k], start)] >= end:  # falls in a gap
            return -1
        best, _, _ = self._remove(start, end)
        return best

    def paint(self, start: int, end: int, value: int) -> None:
        """Paint ``[start, end)`` with ``value``, which must exceed every value painted so
        far (not checked): the parts of older ranges outside it keep their values."""
        if start >= end:
            return
        self.top = value
        last = self._last
        if not last or start >= last[-1]:  # past every range: the streaming case
            if not last:
                self._starts.append([])
                self._ends.append([])
                self._values.append([])
                last.append(end)
            k = len(last) - 1
            starts, ends, values = self._starts[k], self._ends[k], self._values[k]
            starts.append(start)
            ends.append(end)
            values.append(value)
            last[k] = end
        else:
            k = bisect_right(last, start)
            starts, ends, values = self._starts[k], self._ends[k], self._values[k]
            i = bisect_right(ends, start)
            if starts[i] == start and ends[i] == end:  # the same range again
                values[i] = value
                return
            if starts[i] >= end:  # falls in a gap
                starts.insert(i, start)
                ends.insert(i, end)
                values.insert(i, value)
            else:
                self._overwrite(start, end, value)
                return
        if len(starts) >= 2 * _LOAD:
            self._split(k)

    def _overwrite(self, start: int, end: int, value: int) -> None:
        """:meth:`paint` where older ranges overlap ``[start, end)``."""
        _, left, right = self._remove(start, end)
        pieces_s = [start]
        pieces_e = [end]
        pieces_v = [value]
        if left is not None:
            pieces_s.insert(0, left[0])
            pieces_e.insert(0, start)
            pieces_v.insert(0, left[1])
        if right is not None:
            pieces_s.append(end)
            pieces_e.append(right[0])
            pieces_v.append(right[1])
        self._insert(start, pieces_s, pieces_e, pieces_v)

    def _remove(
        self, start: int, end: int
    ) -> tuple[int, tuple[int, int] | None, tuple[int, int] | None]:
        """Remove the ranges overlapping ``[start, end)``: their largest value, and the
        (start, value) of a first range sticking out on the left and the (end, value) of a
        last range sticking out on the right, if any."""
        starts_, ends_, values_, last = self._starts, self._ends, self._values, self._last
        best = -1
        left: tuple[int, int] | None = None
        right: tuple[int, int] | None = None
        k = bisect_right(last, start)
        while k < len(last):
            starts, ends, values = starts_[k], ends_[k], values_[k]
            if starts[0] >= end:
                break
            i = bisect_right(ends, start)
            j = bisect_left(starts, end, i)
            if i < j:
                top = max(values[i:j])
                if top > best:
                    best = top
                if left is None and starts[i] < start:
                    left = (starts[i], values[i])
                if ends[j - 1] > end:
                    right = (ends[j - 1], values[j - 1])
                del starts[i:j], ends[i:j], values[i:j]
            if not starts:
                del starts_[k], ends_[k], values_[k], last[k]
                continue
            last[k] = ends[-1]
            if j < len(starts) + (j - i):  # ranges remain past ``end`` in this block
                break
            k += 1
        return best, left, right

    def _insert(self, start: int, s: list[int], e: list[int], v: list[int]) -> None:
        """Insert sorted pieces that overlap no stored range, ``start`` the first's start
        or inside it."""
        last = self._last
        if not last:
            self._starts.append(s)
            self._ends.append(e)
            self._values.append(v)
            last.append(e[-1])
            return
        k = min(bisect_right(last, start), len(last) - 1)
        starts, ends, values = self._starts[k], self._ends[k], self._values[k]
        p = bisect_left(starts, s[0])
        starts[p:p] = s
        ends[p:p] = e
        values[p:p] = v
        last[k] = ends[-1]
        if len(starts) >= 2 * _LOAD:
            self._split(k)

    def _split(self, k: int) -> None:
        """Split block ``k`` in two."""
        starts, ends, values, last = self._starts[k], self._ends[k], self._values[k], self._last
        self._starts.insert(k + 1, starts[_LOAD:])
        self._ends.insert(k + 1, ends[_LOAD:])
        self._values.insert(k + 1, values[_LOAD:])
        last.insert(k + 1, ends[-1])
        del starts[_LOAD:], ends[_LOAD:], values[_LOAD:]
        last[k] = ends[-1]
