"""``mobilenet_v1`` at its defaults on 96x96x3 is MLPerf Tiny's VWW reference, op for op.

The reference is the trained int8 model in ``shared/models`` (``vww_96_int8.tflite``); ours
has random weights (settled like a trained model's, see ``test_builders.settled``),
calibrated on random [0, 1] images and converted the project's way
(``components.quantize.convert_int8`` on a batch-of-one clone). Weights and scales differ;
everything the architecture decides must not: the builtin operator sequence and each
operator's geometry options (padding, strides, kernel, fused activation), every activation
tensor's shape and type along the graph, every weight and bias tensor's shape, type and
per-channel quantization, the parameter count, the MACs and the activation plan TFLM makes.

Two differences are the converter's, not the architecture's, and are checked as such:
- the reference (an older TensorFlow) has a RESHAPE (1, 1, 1, 256) -> (1, 256) between
  AVERAGE_POOL_2D and FULLY_CONNECTED; TensorFlow 2.21 removes it, since FULLY_CONNECTED
  flattens its input itself (keep_num_dims false). The comparison elides such a flattening
  RESHAPE and compares the FULLY_CONNECTED's input by element count.
- the reference quantizes the FULLY_CONNECTED weights per tensor; TensorFlow 2.21 does it per
  output channel, as both do for every convolution. Its weights' shapes and types still match.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CANDIDATES = (ROOT / "shared" / "models", ROOT.parent / "shared" / "models")
REFERENCE = next(
    (d / "vww_96_int8.tflite" for d in CANDIDATES if (d / "vww_96_int8.tflite").is_file()), None
)

pytestmark = pytest.mark.skipif(
    REFERENCE is None,
    reason="MLPerf Tiny's vww_96_int8.tflite is not in shared/models (beside or inside the repo)",
)

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: Operator options that the architecture fixes (each present on some option types only).
GEOMETRY = (
    "padding",
    "strideH",
    "strideW",
    "dilationHFactor",
    "dilationWFactor",
    "depthMultiplier",
    "filterHeight",
    "filterWidth",
    "fusedActivationFunction",
    "keepNumDims",
)


@pytest.fixture(scope="module")
def graphs():
    from tests.components.models.test_builders import int8_model
    from tflm_ext.model_graph import read_graph

    model, ours = int8_model("mobilenet_v1", (96, 96, 3), 2)
    reference = REFERENCE.read_bytes()
    return {
        "ours": read_graph(ours),
        "reference": read_graph(reference),
        "ours_bytes": ours,
        "reference_bytes": reference,
        "keras": model,
    }


def _activations(graph, op):
    return [graph.tensors[t] for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant]


def _constants(graph, op):
    return [graph.tensors[t] for t in op.inputs if t >= 0 and graph.tensors[t].is_constant]


def _flattens_into_fc(graph, op) -> bool:
    """A RESHAPE whose only consumer is a FULLY_CONNECTED and which keeps the last axis."""
    if op.name != "RESHAPE":
        return False
    source, target = _activations(graph, op)[0].shape, graph.shape(op.outputs[0])
    consumers = graph.consumers(op.outputs[0])
    return (
        len(consumers) == 1
        and graph.ops[consumers[0]].name == "FULLY_CONNECTED"
        and source[-1] == target[-1]
        and math.prod(source) == math.prod(target)
    )


def _layers(graph) -> list[dict]:
    """Per operator (flattening RESHAPEs elided): what the architecture fixes."""
    rows = []
    for op in graph.ops:
        if _flattens_into_fc(graph, op):
            continue
        inputs = [(t.shape, t.dtype) for t in _activations(graph, op)]
        if op.name == "FULLY_CONNECTED":  # it flattens its input: only the size matters
            inputs = [(math.prod(shape), dtype) for shape, dtype in inputs]
        rows.append(
            {
                "op": op.name,
                "inputs": inputs,
                "outputs": [(graph.shape(t), graph.tensors[t].dtype) for t in op.outputs],
                "constants": [(t.shape, t.dtype) for t in _constants(graph, op)],
                "per_channel": [len(t.scales) > 1 for t in _constants(graph, op)],
                "options": {f: getattr(op.options, f) for f in GEOMETRY if hasattr(op.options, f)},
            }
        )
    return rows


def test_reference_has_one_flattening_reshape_and_ours_none(graphs) -> None:
    ours, reference = graphs["ours"], graphs["reference"]
    assert [op.index for op in reference.ops if _flattens_into_fc(reference, op)] == [28]
    assert not any(op.name == "RESHAPE" for op in ours.ops)
    assert (len(ours.ops), len(reference.ops)) == (30, 31)


def test_same_operator_sequence(graphs) -> None:
    ours, theirs = _layers(graphs["ours"]), _layers(graphs["reference"])
    assert [r["op"] for r in ours] == [r["op"] for r in theirs]
    names = [r["op"] for r in ours]
    # 14 convolutions (the first and 13 pointwise), 13 depthwise, then the classifier.
    assert names == ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 13 + [
        "AVERAGE_POOL_2D",
        "FULLY_CONNECTED",
        "SOFTMAX",
    ]


def test_same_operator_geometry(graphs) -> None:
    ours, theirs = _layers(graphs["ours"]), _layers(graphs["reference"])
    for k, (mine, ref) in enumerate(zip(ours, theirs, strict=True)):
        assert mine["options"] == ref["options"], (k, mine["op"])


def test_same_activation_shapes_and_types(graphs) -> None:
    ours, reference = graphs["ours"], graphs["reference"]
    for g in (ours, reference):
        assert [g.shape(t) for t in g.inputs] == [(1, 96, 96, 3)]
        assert [g.shape(t) for t in g.outputs] == [(1, 2)]
        assert [g.tensors[t].dtype for t in (*g.inputs, *g.outputs)] == ["INT8", "INT8"]
    for k, (mine, ref) in enumerate(zip(_layers(ours), _layers(reference), strict=True)):
        assert (mine["inputs"], mine["outputs"]) == (ref["inputs"], ref["outputs"]), (k, mine["op"])


def test_same_weight_tensors(graphs) -> None:
    ours, theirs = _layers(graphs["ours"]), _layers(graphs["reference"])
    for k, (mine, ref) in enumerate(zip(ours, theirs, strict=True)):
        assert mine["constants"] == ref["constants"], (k, mine["op"])


def test_same_quantization_granularity_but_for_the_classifier(graphs) -> None:
    ours, theirs = _layers(graphs["ours"]), _layers(graphs["reference"])
    for k, (mine, ref) in enumerate(zip(ours, theirs, strict=True)):
        if mine["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):  # weights and bias per channel
            assert mine["per_channel"] == ref["per_channel"] == [True, True], (k, mine["op"])
    assert (ours[-2]["op"], ours[-2]["per_channel"], theirs[-2]["per_channel"]) == (
        "FULLY_CONNECTED",
        [True, True],
        [False, False],
    )


def test_same_parameter_count(graphs) -> None:
    import keras

    def folded(graph):
        return sum(
            math.prod(t.shape)
            for op in graph.ops
            if op.name in WEIGHTED
            for t in _constants(graph, op)
        )

    model = graphs["keras"]
    # Batch norm folds into the convolutions' weights and biases at conversion.
    layer_types = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    keras_folded = sum(
        math.prod(w.shape)
        for layer in model.layers
        if isinstance(layer, layer_types)
        for w in layer.weights
    )
    assert folded(graphs["ours"]) == folded(graphs["reference"]) == keras_folded == 210_850
    # Plus 27 batch norms of 4 figures per channel: Keras' count for the reference model.
    assert model.count_params() == 221_794


def test_same_macs_and_activation_plan(graphs) -> None:
    import tflm_ext

    ours, reference = graphs["ours_bytes"], graphs["reference_bytes"]
    assert tflm_ext.graph_stats(ours).total_macs == tflm_ext.graph_stats(reference).total_macs
    assert tflm_ext.graph_stats(ours).total_macs == 7_489_664
    mine, theirs = tflm_ext.measure_arena(ours), tflm_ext.measure_arena(reference)
    assert mine.head == theirs.head == 73_728
    assert mine.tail <= theirs.tail  # one operator (the RESHAPE) fewer to keep
