"""Run a batch of float features through an int8 model on the TFLM interpreter.

Called by evaluation code, normally as ``run_isolated(run_batch, model_bytes, features)``:
``run_batch`` is a plain module-level function so it pickles by reference into the child.
Quantization follows TFLite's QUANTIZE op: ``q = round(x / scale) + zero_point`` with
halves rounded away from zero, clamped to the integer type's range.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from tflm_ext.errors import TflmExtError
from tflm_ext.interpreter import make_interpreter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorDetails:
    """Shape, integer (or float) dtype and per-tensor quantization of a model input/output."""

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int


@dataclass(frozen=True)
class BatchResult:
    """Dequantized scores (N, *output shape without batch; (N, classes) for a classifier)
    and the wall time of each invoke() in milliseconds."""

    scores: np.ndarray
    latency_ms: tuple[float, ...]


def run_batch(model_bytes: bytes, features: np.ndarray, progress: bool = False) -> BatchResult:
    """Quantize each example, invoke the model once per example, dequantize the output.

    features is (N, *input shape without batch); trailing shapes with the same number of
    elements (e.g. (N, 49, 10) for an input of (1, 49, 10, 1)) are reshaped to the input.
    An input a row reader delivers (``tflm_ext.row_reader``) takes whole images.
    """
    from tflm_ext import row_reader

    interpreter = make_interpreter(model_bytes)
    source = _fed_details(model_bytes, interpreter)
    target = _details(interpreter.get_output_details(0))
    host = row_reader.HostRowReader() if row_reader.reader_inputs(model_bytes) else None
    examples = _as_examples(np.asarray(features, dtype=np.float32), source.shape)
    scores = np.empty((len(examples), *target.shape[1:]), dtype=np.float32)
    latency_ms = []
    bar = tqdm(examples, desc="TFLM invoke", unit="example", disable=not progress, leave=False)
    for i, example in enumerate(bar):
        if host:
            host.set_image(quantize(example, source))
        else:
            interpreter.set_input(quantize(example, source), 0)
        start = time.perf_counter()
        interpreter.invoke()
        latency_ms.append((time.perf_counter() - start) * 1000.0)
        scores[i] = dequantize(interpreter.get_output(0), target)[0]
    log.debug("ran %d examples, median invoke %.3f ms", len(examples), np.median(latency_ms or [0]))
    return BatchResult(scores=scores, latency_ms=tuple(latency_ms))


def input_details(model_bytes: bytes) -> TensorDetails:
    """The model's first input as the application feeds it (builds an interpreter: vetted
    models only): a row reader's input has the whole image's shape, not its one row."""
    return _fed_details(model_bytes, make_interpreter(model_bytes))


def output_details(model_bytes: bytes) -> TensorDetails:
    """The model's first output as the interpreter sees it (builds one: vetted models only)."""
    return _details(make_interpreter(model_bytes).get_output_details(0))


def quantize(values: np.ndarray, details: TensorDetails) -> np.ndarray:
    """Float values to the tensor's dtype; float tensors pass through unchanged."""
    if not np.issubdtype(details.dtype, np.integer):
        return np.asarray(values, dtype=details.dtype)
    scaled = np.asarray(values, dtype=np.float64) / details.scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + details.zero_point
    limits = np.iinfo(details.dtype)
    return np.clip(rounded, limits.min, limits.max).astype(details.dtype)


def dequantize(values: np.ndarray, details: TensorDetails) -> np.ndarray:
    """The tensor's integers back to float32: (q - zero_point) * scale."""
    if not np.issubdtype(details.dtype, np.integer):
        return np.asarray(values, dtype=np.float32)
    return ((values.astype(np.float32) - details.zero_point) * details.scale).astype(np.float32)


def _fed_details(model_bytes: bytes, interpreter) -> TensorDetails:
    """Input 0's details, with the image shape a row reader delivers where one does."""
    from tflm_ext import row_reader

    details = _details(interpreter.get_input_details(0))
    image = row_reader.reader_inputs(model_bytes).get(0)
    return replace(details, shape=image) if image else details


def _details(raw: dict) -> TensorDetails:
    """The wheel's details dict, reduced to per-tensor quantization (what model I/O uses)."""
    quantization = raw["quantization_parameters"]
    scales, zero_points = quantization["scales"], quantization["zero_points"]
    if len(scales) > 1:
        raise TflmExtError(f"model input/output has per-axis quantization ({len(scales)} scales)")
    return TensorDetails(
        shape=tuple(int(d) for d in raw["shape"]),
        dtype=np.dtype(raw["dtype"]),
        scale=float(scales[0]) if len(scales) else 1.0,
        zero_point=int(zero_points[0]) if len(zero_points) else 0,
    )


def _as_examples(features: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """(N, ...) features as (N, *input_shape) with the batch dim of 1 kept per example."""
    if input_shape[:1] != (1,):
        raise TflmExtError(f"model input shape {input_shape} does not have a batch of 1")
    per_example = int(np.prod(input_shape))
    if features.ndim < 1 or int(np.prod(features.shape[1:])) != per_example:
        raise TflmExtError(
            f"features of shape {features.shape} do not fit the model input {input_shape}"
        )
    return features.reshape((len(features), *input_shape))
