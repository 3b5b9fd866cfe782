"""receptive_field: TF padding arithmetic, and tiles computed from the backward pass's windows
equal the same chain computed whole (a small numpy executor, one channel per tensor)."""

from __future__ import annotations

import numpy as np
import pytest

from tflm_ext import receptive_field as rf
from tflm_ext.errors import TflmExtError
from tflm_ext.model_graph import read_graph
from tflm_ext.receptive_field import ChainOp, Geometry, Region, Span


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "out", "before"),
    [
        (72, 3, 2, 36, 0),  # even input, stride 2: the one padding row goes after
        (7, 3, 2, 4, 1),
        (16, 3, 1, 16, 1),
        (49, 10, 2, 25, 4),  # DS-CNN's 10x4 first convolution, along time
        (5, 1, 1, 5, 0),
        (3, 5, 1, 3, 2),
    ],
)
def test_same_padding_matches_tensorflow(size, kernel, stride, out, before) -> None:
    axis = rf.same_axis(size, kernel, stride)
    assert (axis.out_size, axis.pad_before) == (out, before)


def test_valid_padding_and_explicit_pad() -> None:
    assert rf.valid_axis(9, 3, 2).out_size == 4
    assert rf.valid_axis(3, 3, 1).out_size == 1
    with pytest.raises(TflmExtError, match="does not fit"):
        rf.valid_axis(2, 3, 1)
    assert rf.explicit_axis(5, 1, 2) == rf.Axis(1, 1, 1, 5, 8)


def test_axis_window_clips_and_reports_border_padding() -> None:
    same = rf.same_axis(8, 3, 1)  # pad 1 before and after
    assert rf.axis_window(same, Span(0, 3)) == rf.AxisWindow(Span(0, 4), 1, 0)
    assert rf.axis_window(same, Span(5, 8)) == rf.AxisWindow(Span(4, 8), 0, 1)
    assert rf.axis_window(same, Span(3, 5)) == rf.AxisWindow(Span(2, 6), 0, 0)
    strided = rf.same_axis(8, 3, 2)  # out 4, total padding 1, all after
    assert rf.axis_window(strided, Span(3, 4)) == rf.AxisWindow(Span(6, 8), 0, 1)
    pad = rf.explicit_axis(4, 2, 1)  # output rows 0-1 and 6 are padding
    assert rf.axis_window(pad, Span(0, 1)) == rf.AxisWindow(Span(0, 0), 1, 0)
    assert rf.axis_window(pad, Span(1, 4)) == rf.AxisWindow(Span(0, 2), 1, 0)
    assert rf.axis_window(pad, Span(6, 7)) == rf.AxisWindow(Span(4, 4), 0, 1)
    assert rf.axis_window(pad, Span(2, 2)) == rf.AxisWindow(Span(0, 0), 0, 0)


def test_split_span_is_the_kernels_balanced_split() -> None:
    assert rf.split_span(10, 3) == (Span(0, 3), Span(3, 6), Span(6, 10))
    assert rf.split_span(9, 4) == (Span(0, 2), Span(2, 4), Span(4, 6), Span(6, 9))  # none empty
    assert rf.split_span(4, 4) == tuple(Span(i, i + 1) for i in range(4))
    with pytest.raises(TflmExtError, match="cannot cut an axis of 3 into 4 tiles"):
        rf.split_span(3, 4)


def _conv(rows: rf.Axis, cols: rf.Axis, inputs: tuple[int, ...], macs: int = 1) -> ChainOp:
    return ChainOp(Geometry(rows, cols), inputs, out_channels=1, macs_per_pixel=macs)


def _sample_chain() -> tuple[ChainOp, ...]:
    """13x11 input: 3x3/s2 SAME -> PAD -> 3x3 VALID -> 1x1 -> ADD(residual) -> 5x3/s2 SAME."""
    c0 = _conv(rf.same_axis(13, 3, 2), rf.same_axis(11, 3, 2), (0,), 9)  # 7x6
    pad = _conv(rf.explicit_axis(7, 1, 2), rf.explicit_axis(6, 0, 1), (1,), 0)  # 10x7
    c2 = _conv(rf.valid_axis(10, 3, 1), rf.valid_axis(7, 3, 1), (2,), 9)  # 8x5
    c3 = _conv(rf.same_axis(8, 1, 1), rf.same_axis(5, 1, 1), (3,), 1)
    add = _conv(rf.identity_axis(8), rf.identity_axis(5), (3, 4), 0)
    c5 = _conv(rf.same_axis(8, 5, 2), rf.same_axis(5, 3, 2), (5,), 15)  # 4x3
    return (c0, pad, c2, c3, add, c5)


def _weights(chain: tuple[ChainOp, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(op.geometry.rows.kernel, op.geometry.cols.kernel)) for op in chain]


def _compute(op: ChainOp, weights, stored: dict, out: Region) -> np.ndarray:
    """op's output on region ``out``, reading its inputs' stored (array, origin) pieces."""
    window = rf.input_window(op.geometry, out)
    top, bottom, left, right = window.pad
    pieces = []
    for tensor in op.inputs:
        array, (row0, col0) = stored[tensor]
        rows = slice(window.region.rows.start - row0, window.region.rows.stop - row0)
        cols = slice(window.region.cols.start - col0, window.region.cols.stop - col0)
        piece = array[rows, cols]
        assert piece.shape == (len(window.region.rows), len(window.region.cols))  # was stored
        pieces.append(np.pad(piece, ((top, bottom), (left, right))))
    if len(pieces) == 2:  # ADD
        return pieces[0] + pieces[1]
    stride = (op.geometry.rows.stride, op.geometry.cols.stride)
    result = np.empty((len(out.rows), len(out.cols)))
    for i, j in np.ndindex(result.shape):
        patch = pieces[0][i * stride[0] :, j * stride[1] :][: weights.shape[0], : weights.shape[1]]
        result[i, j] = (patch * weights).sum()
    return result


def _run(chain, weights, image, out: Region) -> dict:
    """Every chain tensor's region needed for ``out``, computed forwards."""
    regions = rf.tile_regions(chain, out)
    stored = {0: (image, (0, 0))}
    for k, op in enumerate(chain):
        region = regions[k + 1]
        stored[k + 1] = (
            _compute(op, weights[k], stored, region),
            (region.rows.start, region.cols.start),
        )
    return stored


@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (3, 2), (4, 3), (2, 1)])
def test_tiles_equal_the_whole_chain(grid: tuple[int, int]) -> None:
    chain, image = _sample_chain(), np.random.default_rng(1).normal(size=(13, 11))
    weights = _weights(chain)
    whole = _run(chain, weights, image, rf.full_region(chain))
    assert whole[len(chain)][0].shape == (4, 3)
    for tile in rf.grid_tiles(4, 3, grid):
        tiled = _run(chain, weights, image, tile)
        for tensor, (array, (row0, col0)) in tiled.items():
            full = whole[tensor][0][row0 : row0 + array.shape[0], col0 : col0 + array.shape[1]]
            np.testing.assert_allclose(array, full, atol=1e-9)


def test_tile_regions_union_what_every_consumer_reads() -> None:
    chain = _sample_chain()
    regions = rf.tile_regions(chain, Region(Span(0, 1), Span(0, 1)))
    # 5x3/s2 SAME on 8x5 pads 1 row and 1 column before: pixel (0, 0) reads rows -1..2, cols -1..1
    assert regions[5] == Region(Span(0, 4), Span(0, 2))
    assert regions[3] == regions[4] == regions[5]  # ADD reads both operands on its region
    assert regions[2] == Region(Span(0, 6), Span(0, 4))  # 3x3 VALID
    assert regions[1] == Region(Span(0, 5), Span(0, 4))  # PAD's top row is padding
    assert regions[0] == Region(Span(0, 10), Span(0, 8))  # 3x3/s2 SAME, 1 before


def _live_sum_peak(chain, windows) -> int:
    """The least any layout can need: the largest sum of windows alive during one op."""
    spans = rf.lifetimes(chain)
    return max(
        sum(windows[t] for t, (first, last) in spans.items() if first <= k <= last)
        for k in range(len(chain))
    )


def _assert_no_live_overlap(chain, windows, offsets) -> None:
    spans = rf.lifetimes(chain)
    for a in spans:
        for b in spans:
            if a < b and spans[a][0] <= spans[b][1] and spans[b][0] <= spans[a][1]:
                assert (
                    offsets[a] + windows[a] <= offsets[b] or offsets[b] + windows[b] <= offsets[a]
                ), (a, b)


def test_grid_cost_matches_tile_by_tile_counting() -> None:
    chain = _sample_chain()
    once = rf.chain_macs(chain, rf.tile_regions(chain, rf.full_region(chain)))
    for grid in [(1, 1), (2, 2), (4, 3), (3, 1)]:
        tiles = rf.grid_tiles(4, 3, grid)
        per_tile = [rf.tile_regions(chain, tile) for tile in tiles]
        windows = [0] + [max(r[k].area for r in per_tile) for k in range(1, 6)] + [0]
        cost = rf.grid_cost(chain, grid)
        assert cost.extra_macs == sum(rf.chain_macs(chain, r) for r in per_tile) - once
        assert cost.window_bytes == tuple(windows)
        offsets, size = rf.scratch_layout(chain, windows)
        _assert_no_live_overlap(chain, windows, offsets)
        assert cost.scratch_bytes == size == _live_sum_peak(chain, windows)
    assert rf.extra_macs(chain, (1, 1)) == 0
    assert rf.extra_macs(chain, (4, 3)) > rf.extra_macs(chain, (2, 2)) > 0


def test_scratch_layout_reuses_what_is_dead() -> None:
    axis = rf.identity_axis(4)
    plain = tuple(_conv(axis, axis, (k,)) for k in range(4))
    # tensor 1 (10 B) and 3 (9 B) are never alive together; 2 sits beside both
    assert rf.scratch_layout(plain, (0, 10, 2, 9, 0)) == ((None, 0, 10, 0, None), 12)
    residual = (
        _conv(axis, axis, (0,)),
        _conv(axis, axis, (1,)),
        _conv(axis, axis, (2,)),
        _conv(axis, axis, (1, 3)),  # ADD keeps tensor 1 alive across ops 1-3
        _conv(axis, axis, (4,)),
    )
    assert rf.lifetimes(residual) == {1: (0, 3), 2: (1, 2), 3: (2, 3), 4: (3, 4)}
    # the skip tensor 1 blocks its bytes throughout; 4 reuses 2's once 2 is dead
    assert rf.scratch_layout(residual, (0, 4, 4, 4, 4, 0)) == ((None, 0, 4, 8, 4, None), 12)
    assert rf.scratch_layout(plain[:1], (0, 0)) == ((None, None), 0)


@pytest.mark.parametrize("seed", range(20))
def test_scratch_layout_never_overlaps_live_windows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    axis = rf.identity_axis(4)
    chain = []
    for k in range(int(rng.integers(2, 9))):
        skip = int(rng.integers(0, k + 1))
        chain.append(_conv(axis, axis, (k,) if rng.random() < 0.7 else (skip, k)))
    windows = [0, *(int(w) for w in rng.integers(1, 100, len(chain) - 1)), 0]
    offsets, size = rf.scratch_layout(chain, windows)
    _assert_no_live_overlap(chain, windows, offsets)
    assert _live_sum_peak(chain, windows) <= size <= sum(windows)


def test_geometry_and_macs_read_from_a_model(tiny_int8_model: bytes) -> None:
    graph = read_graph(tiny_int8_model)
    conv = rf.op_geometry(graph, 0)  # 3x3, stride 2, SAME on 16: total padding 1, after
    assert conv.rows == rf.Axis(3, 2, 0, 16, 8) and conv.cols == conv.rows
    assert rf.op_geometry(graph, 1).rows == rf.Axis(3, 1, 1, 8, 8)
    assert rf.op_geometry(graph, 3).rows == rf.Axis(8, 8, 0, 8, 1)  # 8x8 VALID pool
    assert [rf.macs_per_pixel(graph, op) for op in range(4)] == [36, 36, 32, 0]
    with pytest.raises(TflmExtError, match="FULLY_CONNECTED"):
        rf.op_geometry(graph, 4)
