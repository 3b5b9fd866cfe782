"""What the firmware must provide and compute for a model, read from the model and its
preprocessing: the operators with custom-op options versions, the input and output tensors'
quantization, and the preprocessing parameters a device has to reproduce bit for bit.

Called by ``components.release.bundle`` when it writes a manifest. ``tflm_ext`` is imported
inside the functions: the registry's verification paths import this package and must stay
free of the TFLM runtime.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from components.artifacts import Preprocessing
from components.errors import ComponentError
from components.release.manifest import CustomOpVersion, OpSet, TensorFormat


def op_set(builtins: tuple[str, ...], customs: tuple[str, ...], model_bytes: bytes) -> OpSet:
    """The operators ``firmware_export`` registered, each custom op with its options version
    (a model holding two versions of one custom op lists both)."""
    versions = custom_op_versions(model_bytes)
    custom = []
    for name in customs:
        if name not in versions:
            raise ComponentError(
                f"custom op {name} is outside the main subgraph: its options version cannot be read"
            )
        custom += [CustomOpVersion(name, v) for v in versions[name]]
    return OpSet(builtin=tuple(builtins), custom=tuple(custom))


def custom_op_versions(model_bytes: bytes) -> dict[str, tuple[int, ...]]:
    """Options versions per custom op of the main subgraph, in order of first use.

    The project's custom ops lead their options with the version as a little-endian int32
    (``tflm_ext.patch_op``): the firmware's kernel refuses any version it was not built for.
    """
    from tflm_ext.model_graph import read_graph

    found: dict[str, dict[int, None]] = {}
    for op in read_graph(model_bytes).ops:
        if op.is_custom:
            found.setdefault(op.name, {})[_leading_version(op.name, op.custom_options)] = None
    return {name: tuple(v) for name, v in found.items()}


def _leading_version(name: str, options: bytes) -> int:
    if len(options) < 4:
        raise ComponentError(
            f"custom op {name} has {len(options)} bytes of options: no leading version word"
        )
    return struct.unpack_from("<i", options)[0]


def tensor_formats(model_bytes: bytes) -> tuple[TensorFormat, TensorFormat]:
    """(input, output) of a single-input, single-output classifier, the input as the
    application feeds it."""
    from tflm_ext import row_reader
    from tflm_ext.model_graph import read_graph

    graph = read_graph(model_bytes)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ComponentError(
            f"a release bundle holds a classifier with one input and one "
            f"output; this model has {len(graph.inputs)} and "
            f"{len(graph.outputs)}"
        )
    model_input = _format(graph.tensors[graph.inputs[0]])
    if image := row_reader.reader_inputs(model_bytes).get(0):
        # The application's row reader delivers the whole image a row at a time (its
        # callback is in the bundle's row_reader.h): the input it feeds is the image.
        model_input = dataclasses.replace(model_input, shape=tuple(image))
    return model_input, _format(graph.tensors[graph.outputs[0]])


def _format(tensor) -> TensorFormat:
    quantized = len(tensor.scales) == 1
    return TensorFormat(
        shape=tuple(int(d) for d in tensor.shape),
        dtype=tensor.dtype.lower(),
        scale=float(tensor.scales[0]) if quantized else None,
        zero_point=int(tensor.zero_points[0]) if quantized else None,
    )


def check_input_shape(preprocessing: Preprocessing, model_input: TensorFormat) -> None:
    """Refuse a preprocessing that does not produce the model's input (without batch axis)."""
    from components.preprocessing import example_shape

    expected = example_shape(preprocessing)
    if tuple(model_input.shape[1:]) != tuple(expected):
        raise ComponentError(
            f"preprocessing {preprocessing.describe()} produces {expected} but the model's "
            f"input is {model_input.shape}"
        )


def preprocessing_parameters(preprocessing: Preprocessing) -> dict[str, Any]:
    """Every parameter the firmware needs to reproduce the model's input from a raw signal."""
    from components.audio.frontends import MFCC_RECIPES

    if preprocessing.kind == "image":
        return _image_parameters(preprocessing)
    if preprocessing.frontend in MFCC_RECIPES:
        return _mfcc_parameters(str(preprocessing.frontend))
    if preprocessing.frontend == "micro":
        return dict(MICRO_FRONTEND)
    raise ComponentError(f"no firmware description of preprocessing {preprocessing.describe()}")


def _image_parameters(preprocessing: Preprocessing) -> dict[str, Any]:
    height, width = preprocessing.image_size or (0, 0)
    return {
        "output_shape": [height, width, preprocessing.channels],
        "color": "rgb" if preprocessing.channels == 3 else "grayscale",
        "resize": "bilinear (Pillow), straight to height x width, no crop",
        "scale": "pixel / 255, to [0, 1]",
    }


def _mfcc_parameters(frontend: str) -> dict[str, Any]:
    """One MFCC recipe of ``components.audio.frontends``, as firmware must compute it."""
    from components.audio import frontends
    from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE

    recipe = frontends.MFCC_RECIPES[frontend]
    return {
        "output_shape": list(frontends.FRONTENDS[frontend]),
        "sample_rate_hz": SAMPLE_RATE,
        "clip_samples": CLIP_SAMPLES,
        "signal": "float PCM in [-1, 1] (int16 / 32768), zero-padded at the end to clip_samples",
        "peak_normalise": recipe.peak_normalise,  # divide the clip by its largest sample value
        "window": "periodic hann",
        "window_samples": recipe.window,
        "stride_samples": recipe.stride,
        "end_padding": False,
        "fft_length": recipe.fft,
        "spectrum": "magnitude",
        "mel_bins": frontends.MFCC_MEL_BINS,
        "mel_band_hz": list(frontends.MFCC_BAND_HZ),
        "mel_matrix": "tf.signal.linear_to_mel_weight_matrix",
        "log": f"log(mel + {frontends.MFCC_LOG_OFFSET})",
        "dct": "DCT-II of tf.signal.mfccs_from_log_mel_spectrograms",
        "coefficients": frontends.FRONTENDS[frontend][1],
    }


# TFLM's audio micro-frontend as pymicro-features configures it (components.audio.frontends).
MICRO_FRONTEND: dict[str, Any] = {
    "output_shape": [98, 40],
    "sample_rate_hz": 16000,
    "clip_samples": 16000,
    "signal": "int16 PCM",
    "window_ms": 30,
    "step_ms": 10,
    "channels": 40,
    "band_hz": [125.0, 7500.0],
    "noise_reduction": {
        "smoothing_bits": 10,
        "even_smoothing": 0.025,
        "odd_smoothing": 0.06,
        "min_signal_remaining": 0.05,
    },
    "pcan": {"enabled": True, "strength": 0.95, "offset": 80.0, "gain_bits": 21},
    "log_scale": {"enabled": True, "scale_shift": 6},
    "output_scale": 0.0390625,
    "reset_state_per_clip": True,
}
