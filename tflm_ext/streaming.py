"""Row streaming of a stage chain: the pull schedule, its ring buffers and what they cost.

Called by ``stage_rules`` (the planner's cost of a streamed stage) and by
``memory_profile`` (the scratch a streamed TFLM_EXT_PATCH_STAGE requests). The kernel
(``kernels/stream_stage.cc``) runs the same schedule in Prepare to size the same rings, so
the two must change together; ``tests/tflm_ext/test_streaming.py`` checks TFLM's measured
arena against this module byte for byte.

The schedule: the stage output is produced row by row, top to bottom, in column strips. The
last op asks for its next row; a row whose input rows are not all computed yet first asks
its input (its first operand before its second) for rows up to the last one its window
reads, recursively. Every row of every tensor in the stage's row span is computed once per
strip (``chain_macs`` of the whole output: 0 extra MACs on one strip), and a trailing
global pool sums its input one row at a time. Each intermediate tensor lives in a ring of
full-strip-width rows; when a row is written, every row from the lowest one a consumer
will still read must fit, which sizes the ring. For a tensor read by one convolution that
is the consumer's window, ``(k - 1) * d + 1`` rows (clipped to the tensor): the producer
only writes after the consumer has finished the row that read the oldest slot, so no
``stride - 1`` rows of slack are needed; a skip tensor also holds the rows its ADD still
waits for while the other branch runs ahead.

With a row reader (``reader_channels``: the stage input comes from the application's
callback, not from the arena) the stage input is pulled like any other tensor, into a ring
of whole input rows: its consumers' window. On several strips each strip pulls the rows
again and reads its columns of them (the reader serves the image once per strip), so the
other rings shrink to a strip's width while the image still never exists whole.

Scratch layout (the kernel's): the pool's int32 sums first (4 B per channel), then each
ring in tensor order (the reader's first), unaligned (int8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tflm_ext import receptive_field as rf
from tflm_ext.errors import TflmExtError
from tflm_ext.receptive_field import ChainOp, Span

_NEVER = 1 << 62


@dataclass(frozen=True)
class StreamCost:
    """A chain streamed over column strips: per chain tensor (0 is the stage input, k + 1
    the output of op k) its ring's rows, width (pixels) and bytes (0 for the stage input and
    output, which are full tensors), the pool sums' bytes, the one scratch request, and the
    MACs recomputed where strips overlap (0 on one strip)."""

    ring_rows: tuple[int, ...]
    ring_widths: tuple[int, ...]
    ring_bytes: tuple[int, ...]
    sum_bytes: int
    scratch_bytes: int
    extra_macs: int


def stream_cost(
    chain: Sequence[ChainOp],
    strips: int = 1,
    heights: Sequence[int] | None = None,
    reader_channels: int = 0,
) -> StreamCost:
    """What streaming the chain over ``strips`` column strips allocates and recomputes
    (``heights``: the chain's ``ring_rows`` when already computed; ``reader_channels``: the
    stage input's channels when a row reader delivers it, whole rows on any strip count).

    Raises TflmExtError when the strips do not fit the stage output, when a strip reads
    nothing of some intermediate tensor (the kernel refuses such strips), or when a global
    pool is not the chain's last op or is cut into strips.
    """
    _check_pools(chain, strips)
    whole = rf.full_region(chain)
    rows = rf.axis_spans(chain, "rows", whole.rows)
    cols = [rf.axis_spans(chain, "cols", s) for s in rf.split_span(len(whole.cols), strips)]
    count = len(chain)
    for spans in cols:
        if any(not len(spans[t]) for t in range(1, count)):
            raise TflmExtError(f"a strip of {strips} reads nothing of an intermediate tensor")
    reader = reader_channels > 0
    heights = tuple(ring_rows(chain, reader) if heights is None else heights)
    widths = [0 if t in (0, count) else max(len(s[t]) for s in cols) for t in range(count + 1)]
    widths[0] = chain[0].geometry.cols.in_size if reader else 0  # whole rows, as read
    channels = [reader_channels, *(op.out_channels for op in chain)]
    ring = tuple(h * w * c for h, w, c in zip(heights, widths, channels, strict=True))
    sums = 4 * chain[-1].out_channels if chain[-1].reduces else 0
    streamed = sum(
        op.macs_per_pixel * len(rows[k + 1]) * sum(len(s[k + 1]) for s in cols)
        for k, op in enumerate(chain)
    )
    once = rf.chain_macs(chain, rf.tile_regions(chain, whole))
    return StreamCost(heights, tuple(widths), ring, sums, sums + sum(ring), streamed - once)


def ring_rows(chain: Sequence[ChainOp], reader: bool = False) -> tuple[int, ...]:
    """Rows of every chain tensor's ring under the pull schedule (0 for the stage output,
    and for the stage input unless a row reader delivers it). Rows do not depend on the
    column strip."""
    rows = rf.axis_spans(chain, "rows", rf.full_region(chain).rows)
    return _Pull(chain, rows, reader).run()


def strip_counts(chain: Sequence[ChainOp], sizes: Sequence[int]) -> list[int]:
    """1 and each of ``sizes`` clipped to the stage output's width, without duplicates, that
    the chain can be streamed over (a stage ending in a global pool streams whole)."""
    width = len(rf.full_region(chain).cols)
    counts = sorted({1, *(min(n, width) for n in sizes)})
    return [1] if chain[-1].reduces else counts


class _Pull:
    """The kernel's pull schedule (``Pull`` in kernels/stream_stage.cc), without arithmetic."""

    def __init__(self, chain: Sequence[ChainOp], rows: Sequence[Span], reader: bool) -> None:
        self.chain, self.rows, self.reader = chain, rows, reader
        self.done = [span.start for span in rows]
        last = chain[-1]
        self.pool_rows = rows[last.inputs[0]].start if last.reduces else 0
        self.consumers = [
            [k for k, op in enumerate(chain) if t in op.inputs] for t in range(len(rows))
        ]
        self.ring = [0] * len(rows)

    def run(self) -> tuple[int, ...]:
        count = len(self.chain)
        stack = [(count, self.rows[count].stop)]
        while stack:
            tensor, until = stack[-1]
            if self.done[tensor] >= until:
                stack.pop()
                continue
            if tensor == 0:  # only pulled from the row reader
                self._note(0, self.done[0])
                self.done[0] += 1
                continue
            wanted = self._step(tensor, count)
            if wanted is not None:
                stack.append(wanted)
        return tuple(self.ring)

    def _step(self, tensor: int, count: int) -> tuple[int, int] | None:
        """Advance ``tensor`` by one row, or name the input (and rows) it waits for."""
        op = self.chain[tensor - 1]
        if op.reduces:
            return self._step_pool(tensor)
        y = self.done[tensor]
        window = rf.axis_window(op.geometry.rows, Span(y, y + 1)).span
        for source in op.inputs:
            if self._pending(source, window.stop):
                return source, window.stop
        if tensor != count:
            self._note(tensor, y)
        self.done[tensor] = y + 1
        return None

    def _pending(self, tensor: int, until: int) -> bool:
        """Rows of ``tensor`` below ``until`` still to come (the stage input is whole,
        unless the reader delivers it)."""
        return (tensor != 0 or self.reader) and self.done[tensor] < until

    def _note(self, tensor: int, y: int) -> None:
        """Writing row ``y``: the ring holds every row from the lowest one still needed."""
        low = min(max(self._lowest_needed(tensor), self.rows[tensor].start), y)
        self.ring[tensor] = max(self.ring[tensor], y - low + 1)

    def _step_pool(self, tensor: int) -> tuple[int, int] | None:
        source = self.chain[tensor - 1].inputs[0]
        if self.pool_rows < self.rows[source].stop:
            if self._pending(source, self.pool_rows + 1):
                return source, self.pool_rows + 1
            self.pool_rows += 1
            return None
        self.done[tensor] = self.rows[tensor].stop
        return None

    def _lowest_needed(self, tensor: int) -> int:
        """The first row of ``tensor`` a consumer will still read (_NEVER: none will)."""
        low = _NEVER
        for k in self.consumers[tensor]:
            op, written = self.chain[k], k + 1
            if op.reduces:
                if self.pool_rows < self.rows[tensor].stop:
                    low = min(low, self.pool_rows)
            elif self.done[written] < self.rows[written].stop:
                y = self.done[written]
                low = min(low, rf.axis_window(op.geometry.rows, Span(y, y + 1)).span.start)
        return low


def _check_pools(chain: Sequence[ChainOp], strips: int) -> None:
    for k, op in enumerate(chain):
        if op.reduces and k != len(chain) - 1:
            raise TflmExtError(f"chain op {k} is a global pool but not the last op")
    if chain[-1].reduces and strips != 1:
        raise TflmExtError("a stage ending in a global pool streams in one strip, not strips")
