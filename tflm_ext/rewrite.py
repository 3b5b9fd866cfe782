"""Rewrite a stage of an int8 .tflite model into TFLM_EXT_PATCH_STAGE, and verify it on TFLM.

Called by the patch component (after the planner picks a stage and grid): ``rewrite_stage``
is a pure bytes -> bytes function; ``verify`` runs the original and the rewritten model on the
real TFLM interpreter, each in a child process, and compares their outputs bit for bit and
their arenas. The driver reads like the pass list it runs: validate, fuse, clean up, with the
graph validated after every pass and the model's interface checked unchanged at the end.
``mode="stream"`` fuses it to stream rows instead of tiles (``passes.stream_patch_stage``);
``mode="builtin"`` splits the stage into per-tile builtin operators instead of fusing it
(``passes.split_stage_builtin``), for firmware that cannot add custom kernels.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor

from tflm_ext import row_reader
from tflm_ext.arena import ArenaMeasurement, measure_arena
from tflm_ext.errors import TflmExtError
from tflm_ext.interpreter import make_interpreter
from tflm_ext.isolation import run_isolated
from tflm_ext.passes import (
    CLEANUP_PASSES,
    fuse_patch_stage,
    read_rows_patch_stage,
    stream_patch_stage,
)
from tflm_ext.passes.check_graph import check_graph
from tflm_ext.passes.remove_dead_tensors import dead_tensors
from tflm_ext.passes.remove_unused_buffers import unused_buffers
from tflm_ext.passes.split_stage_builtin import split_stage_into_tiles
from tflm_ext.tflite_file import read_model, root

log = logging.getLogger(__name__)

# The pass that replaces the stage, per rewrite mode.
_STAGE_PASSES = {
    "custom": fuse_patch_stage,
    "stream": stream_patch_stage,
    "reader": read_rows_patch_stage,
    "builtin": split_stage_into_tiles,
}
RewriteMode = Literal["custom", "stream", "reader", "builtin"]


@dataclass(frozen=True)
class VerifyReport:
    """Whether both models gave identical outputs on every example, the first difference
    if not, and each model's arena as measured on the wheel's interpreter."""

    identical: bool
    first_mismatch: str | None
    arena_before: ArenaMeasurement
    arena_after: ArenaMeasurement
    examples: int

    def raise_if_different(self) -> None:
        """Fail with the first differing output, for callers that must not continue."""
        if not self.identical:
            raise TflmExtError(f"rewritten model differs from the original: {self.first_mismatch}")


def rewrite_stage(
    model_bytes: bytes,
    first_op: int,
    last_op: int,
    grid: tuple[int, int],
    *,
    mode: RewriteMode = "custom",
) -> bytes:
    """Replace ops[first_op..last_op] by one TFLM_EXT_PATCH_STAGE op over a (rows, cols) grid
    of tiles; with mode "stream" by one that streams rows over grid = (1, column strips)
    (no recomputation on one strip; a global pool may end the stage); with mode "reader"
    by one that streams the same way from the application's row reader
    (``tflm_ext.row_reader``; each strip reads the rows again), the model input then being
    one row that only describes the image; with mode "builtin" by
    per-tile builtin operators over the grid (no custom kernel needed; a smaller saving, see
    ``passes.split_stage_builtin``).

    Raises TflmExtError naming the operator and rule when the stage is not supported.
    """
    if mode not in _STAGE_PASSES:
        raise TflmExtError(f"rewrite mode {mode!r} is not one of {sorted(_STAGE_PASSES)}")
    model = read_model(model_bytes)
    check_graph(model, after="reading the model")
    interface = _interface(model)
    stage_pass = _STAGE_PASSES[mode]
    replace = functools.partial(stage_pass, first_op=first_op, last_op=last_op, grid=grid)
    for name, step in (
        (stage_pass.__name__, replace),
        *((p.__name__, p) for p in CLEANUP_PASSES),
    ):
        step(model)
        check_graph(model, after=name)
    _check_clean(model)
    rewritten = bytes(model.build())
    if _interface(read_model(rewritten)) != _expected_interface(interface, mode):
        raise TflmExtError("the rewrite changed the model's inputs or outputs")
    log.info(
        "rewrote operators %d..%d (%s): %d B -> %d B",
        first_op,
        last_op,
        mode,
        len(model_bytes),
        len(rewritten),
    )
    return rewritten


def verify(
    original: bytes,
    rewritten: bytes,
    inputs: np.ndarray | int = 8,
    seed: int = 0,
    timeout_s: float = 600,
) -> VerifyReport:
    """Run both models on the same inputs on the real TFLM interpreter and compare.

    inputs is either a count of random examples (integer inputs span their whole range;
    seeded) or an array (N, *input shape) for a single-input model.
    """
    examples = example_inputs(original, inputs, seed)
    before, arena_before = run_isolated(run_and_measure, original, examples, timeout_s=timeout_s)
    after, arena_after = run_isolated(run_and_measure, rewritten, examples, timeout_s=timeout_s)
    mismatch = first_mismatch(before, after)
    report = VerifyReport(
        identical=mismatch is None,
        first_mismatch=mismatch,
        arena_before=arena_before,
        arena_after=arena_after,
        examples=len(examples[0]) if examples else 0,
    )
    log.info("verify: %s", report)
    return report


def example_inputs(model_bytes: bytes, inputs: np.ndarray | int, seed: int) -> list[np.ndarray]:
    """One (N, *shape) array per model input."""
    tensors = read_model(model_bytes).subgraphs[0].inputs
    shapes = [tuple(int(d) for d in t.shape) for t in tensors]
    dtypes = [np.dtype(t.numpy_dtype) for t in tensors]
    if not isinstance(inputs, int | np.integer):
        if len(shapes) != 1:
            raise TflmExtError(f"an input array fits single-input models; this has {len(shapes)}")
        array = np.asarray(inputs)
        if array.size % max(int(np.prod(shapes[0])), 1):
            raise TflmExtError(f"inputs of shape {array.shape} do not fit {shapes[0]}")
        return [array.astype(dtypes[0], copy=False).reshape((-1, *shapes[0]))]
    rng = np.random.default_rng(seed)
    return [_random(rng, int(inputs), s, d) for s, d in zip(shapes, dtypes, strict=True)]


def run_and_measure(
    model_bytes: bytes, examples: list[np.ndarray]
) -> tuple[list[np.ndarray], ArenaMeasurement]:
    """Child-side: every output for every example, then the arena. Module-level to pickle."""
    return run_outputs(model_bytes, examples), measure_arena(model_bytes)


def run_outputs(model_bytes: bytes, examples: list[np.ndarray]) -> list[np.ndarray]:
    """One (N, *shape) array per model output, from invoking each of the N examples
    (``examples`` holds one (N, *shape) array per model input; an input a row reader
    delivers takes whole images, served by the host's reader). Builds an interpreter in
    this process: call it through ``run_isolated`` for models not yet vetted."""
    interpreter = make_interpreter(model_bytes)
    count = root(model_bytes).Subgraphs(0).OutputsLength()
    outputs: list[list[np.ndarray]] = [[] for _ in range(count)]
    read = row_reader.reader_inputs(model_bytes)
    host = row_reader.HostRowReader() if read else None
    for n in range(len(examples[0]) if examples else 0):
        for i, source in enumerate(examples):
            if i in read:
                host.set_image(source[n])  # the stage pulls its rows; the input is one row
            else:
                interpreter.set_input(source[n], i)
        interpreter.invoke()
        for i in range(count):
            outputs[i].append(np.array(interpreter.get_output(i), copy=True))
    return [np.stack(o) for o in outputs]


def first_mismatch(before: list[np.ndarray], after: list[np.ndarray]) -> str | None:
    """'output K, example N, element IDX: original A, rewritten B', or None if identical."""
    if len(before) != len(after):
        return f"the original has {len(before)} outputs, the rewritten model {len(after)}"
    for k, (a, b) in enumerate(zip(before, after, strict=True)):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {k}: original {a.dtype}{a.shape}, rewritten {b.dtype}{b.shape}"
        differs = np.argwhere(a != b)
        if len(differs):
            where = tuple(int(i) for i in differs[0])
            return (
                f"output {k}, example {where[0]}, element {where[1:]}: "
                f"original {a[where]}, rewritten {b[where]}"
            )
    return None


def _random(rng: np.random.Generator, count: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        return rng.integers(limits.min, limits.max, (count, *shape), endpoint=True, dtype=dtype)
    return rng.uniform(-1.0, 1.0, (count, *shape)).astype(dtype)


def _interface(model: model_editor.Model) -> tuple:
    """Name, shape, type and quantization of every subgraph-0 input and output."""
    subgraph = model.subgraphs[0]

    def describe(t: model_editor.Tensor) -> tuple:
        quant = t.quantization
        scales = tuple(float(s) for s in quant.scales) if quant else ()
        zeros = tuple(int(z) for z in quant.zero_points) if quant else ()
        return t.name, tuple(int(d) for d in t.shape), int(t.dtype), scales, zeros

    return tuple(map(describe, subgraph.inputs)), tuple(map(describe, subgraph.outputs))


def _expected_interface(interface: tuple, mode: str) -> tuple:
    """The interface a rewrite must keep: a row reader's model input shrinks to one row."""
    if mode != "reader":
        return interface
    inputs, outputs = interface
    name, shape, dtype, scales, zeros = inputs[0]
    return ((name, (1, 1, *shape[2:]), dtype, scales, zeros), *inputs[1:]), outputs


def _check_clean(model: model_editor.Model) -> None:
    """The cleanup passes' postcondition: no dead tensor, no unused buffer."""
    dead = [t.name for sg in model.subgraphs for t in dead_tensors(sg)]
    unused = unused_buffers(model)
    if dead or unused:
        raise TflmExtError(
            f"cleanup left {len(dead)} dead tensors {dead[:5]} and {len(unused)} unused buffers"
        )
