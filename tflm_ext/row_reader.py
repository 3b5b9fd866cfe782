"""Row-reader input: which model inputs a streamed stage reads row by row, and the host's
reader, which serves those rows from an image in host memory.

A stage fused with ``rewrite_stage(..., mode="reader")`` pulls its input rows through the
application's callback instead of the model's input tensor, so the image never sits in the
arena; the input tensor shrinks to one row (1, 1, width, channels) that keeps its name,
type and quantization. On a stage streamed in column strips, each strip reads the rows
again (``reader_passes``: passes over the image per invoke). Firmware registers the
callback with
``tflm_ext::patch_stage::SetRowReader`` (``kernels/patch_stage.h``) before ``Invoke``; on
the host, the project's kernel library exports ``TflmExtSetRowImage``, which
``HostRowReader`` points at one int8 image before each invoke. Used by
``rewrite.run_outputs`` and ``inference.run_batch``, so verification and timing run such
models on whole images.
"""

from __future__ import annotations

import ctypes

import numpy as np

from tflm_ext import host_build, patch_op
from tflm_ext.errors import TflmExtError
from tflm_ext.model_graph import read_graph

ROW_IMAGE_SYMBOL = "TflmExtSetRowImage"


def reader_inputs(model_bytes: bytes) -> dict[int, tuple[int, int, int, int]]:
    """Model input positions a row reader delivers, each with the whole image's shape
    (1, height, width, channels) its stage reads."""
    return {i: (1, *stage.input_shape) for i, stage in _reading_stages(model_bytes).items()}


def reader_passes(model_bytes: bytes) -> dict[int, int]:
    """Model input positions a row reader delivers, each with the passes over the image
    its stage makes per invoke: one per column strip (rows top to bottom in each)."""
    return {i: stage.grid[1] for i, stage in _reading_stages(model_bytes).items()}


def _reading_stages(model_bytes: bytes) -> dict[int, patch_op.PatchStage]:
    graph = read_graph(model_bytes)
    found = {}
    for op in graph.ops:
        if op.name != patch_op.OP_NAME or not op.custom_options:
            continue
        stage = patch_op.decode_options(op.custom_options)
        if stage.input_source == patch_op.InputSource.ROW_READER and op.inputs[0] in graph.inputs:
            found[graph.inputs.index(op.inputs[0])] = stage
    return found


class HostRowReader:
    """The host kernel library's row reader: every row-reading stage in this process reads
    the image last given to ``set_image`` (kept alive here until the next one)."""

    def __init__(self) -> None:
        from tflm_ext.interpreter import load_registerer

        registerer = host_build.patch_stage_registerer()
        load_registerer(registerer)  # loaded once, RTLD_GLOBAL, as the interpreter needs it
        library = ctypes.CDLL(str(registerer.library.resolve()))
        self._set = getattr(library, ROW_IMAGE_SYMBOL)
        self._set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._set.restype = None
        self._image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Serve rows of ``image``: int8 (1, height, width, channels) or (height, width,
        channels)."""
        array = np.ascontiguousarray(image)
        if array.dtype != np.int8 or array.ndim not in (3, 4) or array.shape[:-3] not in ((), (1,)):
            raise TflmExtError(f"a row image is int8 (1, H, W, C), not {array.dtype}{array.shape}")
        self._image = array.reshape(array.shape[-3:])
        height, width, channels = self._image.shape
        self._set(self._image.ctypes.data, height, width, channels)

    def clear(self) -> None:
        """Unset the reader: a row-reading stage then fails cleanly."""
        self._set(None, 0, 0, 0)
        self._image = None
