"""What a patch stage is: its support rules, its tile chain and what it costs on a grid.

Called by ``tflm_ext.planner`` (which searches stages and grids) and usable by anyone who
wants to know why an operator range cannot be fused. Operator rules are the rewrite's own
(``passes.stage_ops.RULES``), so the planner never proposes a stage the rewrite refuses;
the stage rules here are functions whose docstring is the user-facing message and which
return None when the stage passes, else a detail naming the offending value.

A stage runs in one of two executions (``TILES``, ``STREAM``), each with its own stage rules
(``TILE_RULES``, ``STREAM_RULES``): tiles need a downsampling layer (else recomputed halos
buy nothing) and cannot hold a global pool; a streamed stage recomputes nothing, so any
closed stage may help, and it may end in a global pool. Tiles split into builtin operators
(``BUILTIN``, ``passes.split_stage_builtin``) keep the tile rules and hold no max pool that
pads its input (``BUILTIN_RULES``).

What a fused stage costs in the arena (the kernel's contract, ``kernels/patch_stage.h``):
    working set = align16(stage input) + align16(stage output) + align16(scratch)
where the scratch holds, for tiles, every intermediate tensor's largest window over the
grid's tiles, laid out so that windows alive at the same time never overlap (0 for a one-op
stage): ``receptive_field.grid_cost``; for streaming, every intermediate tensor's ring of
rows and a trailing pool's sums: ``streaming.stream_cost``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext import receptive_field as rf
from tflm_ext import streaming
from tflm_ext.errors import TflmExtError
from tflm_ext.interpreter import ARENA_ALIGNMENT, align_up
from tflm_ext.model_graph import ModelGraph
from tflm_ext.passes import stage_ops
from tflm_ext.patch_op import MAX_OPS, MAX_TILE_OPS
from tflm_ext.tflite_file import read_model

StageRule = Callable[[ModelGraph, int, int], "str | None"]
Execution = str  # TILES or STREAM
TILES, STREAM = "tiles", "stream"
EXECUTIONS = (TILES, STREAM)  # the custom op's
BUILTIN = "builtin"  # tiles split into builtin operators
_POOLS = ("AVERAGE_POOL_2D", "MEAN")


@dataclass(frozen=True)
class StageCost:
    """A stage on a grid (streaming: (1, column strips)): its input and output tensors, the
    kernel's scratch request, its working set and the MACs it recomputes."""

    input_tensor: int
    output_tensor: int
    scratch_bytes: int
    working_set_bytes: int
    extra_macs: int


def stage_chain(graph: ModelGraph, first: int, last: int) -> tuple[rf.ChainOp, ...]:
    """Operators first..last as a tile chain (stage input = first op's first activation)."""
    ids = {graph.activation_inputs(first)[0]: 0}
    chain = []
    for k, op in enumerate(range(first, last + 1)):
        inputs = tuple(ids[t] for t in graph.activation_inputs(op))
        chain.append(
            rf.ChainOp(
                rf.op_geometry(graph, op),
                inputs,
                graph.shape(graph.ops[op].outputs[0])[-1],
                rf.macs_per_pixel(graph, op),
                graph.ops[op].name in _POOLS,
            )
        )
        ids[graph.ops[op].outputs[0]] = k + 1
    return tuple(chain)


def stage_cost(
    graph: ModelGraph,
    first: int,
    last: int,
    grid: tuple[int, int],
    chain: Sequence[rf.ChainOp] | None = None,
    execution: Execution = TILES,
    ring_rows: Sequence[int] | None = None,
    row_reader: bool = False,
) -> StageCost:
    """What fusing operators first..last over grid allocates and recomputes (pass the
    stage's chain when it is already built). Streaming: grid is (1, column strips), and
    ``ring_rows`` the chain's ``streaming.ring_rows`` if known; ``row_reader``: the stage
    input comes from the application's row reader (its tensor is one row)."""
    chain = stage_chain(graph, first, last) if chain is None else chain
    source, target = graph.activation_inputs(first)[0], graph.ops[last].outputs[0]
    if execution == STREAM:
        channels = graph.shape(source)[-1] if row_reader else 0
        cost = streaming.stream_cost(chain, grid[1], ring_rows, reader_channels=channels)
    else:
        cost = rf.grid_cost(chain, grid)
    source_bytes = reader_input_bytes(graph, source) if row_reader else graph.tensors[source].nbytes
    working_set = sum(
        align_up(n, ARENA_ALIGNMENT)
        for n in (source_bytes, graph.tensors[target].nbytes, cost.scratch_bytes)
    )
    return StageCost(source, target, cost.scratch_bytes, working_set, cost.extra_macs)


def reader_input_bytes(graph: ModelGraph, tensor: int) -> int:
    """What a model input a row reader delivers keeps in the arena: one int8 row."""
    _, _, width, channels = graph.shape(tensor)
    return width * channels


def can_read_rows(graph: ModelGraph, first: int, last: int) -> bool:
    """Whether a streamed stage first..last may read its input from a row reader: it starts
    the graph, and its input is a model input no operator after it reads."""
    source = graph.activation_inputs(first)[0]
    return first == 0 and source in graph.inputs and max(graph.consumers(source)) <= last


# --- support rules: each docstring is the message a user sees ---------------------------


def rule_one_input(graph: ModelGraph, first: int, last: int) -> str | None:
    """A stage reads exactly one activation from outside it: its input."""
    produced = {graph.ops[op].outputs[0] for op in range(first, last + 1)}
    outside = {t for op in range(first, last + 1) for t in graph.activation_inputs(op)}
    outside -= produced
    return None if len(outside) == 1 else f"it reads tensors {sorted(outside)}"


def rule_closed(graph: ModelGraph, first: int, last: int) -> str | None:
    """Only the last operator's output leaves a stage; every other output feeds the stage."""
    for op in range(first, last):
        tensor = graph.ops[op].outputs[0]
        readers = graph.consumers(tensor)
        if tensor in graph.outputs or not readers or max(readers) > last:
            return f"operator {op}'s output (tensor {tensor}) is read by operators {readers}"
    return None


def rule_downsamples(graph: ModelGraph, first: int, last: int) -> str | None:
    """A stage contains a downsampling layer (stride 2), so its output is small."""
    strides = [_stride(graph, op) for op in range(first, last + 1)]
    return None if max(strides) > 1 else "all its strides are 1"


def rule_length(graph: ModelGraph, first: int, last: int) -> str | None:
    """A streamed stage holds at most MAX_OPS (128) operators, the kernel's bookkeeping."""
    return None if last - first + 1 <= MAX_OPS else f"it holds {last - first + 1}"


def rule_tile_length(graph: ModelGraph, first: int, last: int) -> str | None:
    """A tile stage holds at most MAX_TILE_OPS (32) operators, what the kernel's tile
    planner keeps on its stack."""
    return None if last - first + 1 <= MAX_TILE_OPS else f"it holds {last - first + 1}"


def rule_no_pool(graph: ModelGraph, first: int, last: int) -> str | None:
    """A tile stage holds no global pool (AVERAGE_POOL_2D over the map, MEAN): only a
    streamed stage sums rows into one pixel."""
    pools = [op for op in range(first, last + 1) if graph.ops[op].name in _POOLS]
    return f"operator {pools[0]} is {graph.ops[pools[0]].name}" if pools else None


def rule_pool_last(graph: ModelGraph, first: int, last: int) -> str | None:
    """A global pool ends a streamed stage: it writes its one pixel only after reading every
    row, so nothing in the stage can follow it."""
    pools = [op for op in range(first, last) if graph.ops[op].name in _POOLS]
    return f"operator {pools[0]} ({graph.ops[pools[0]].name}) is followed" if pools else None


def rule_max_pool_unpadded(graph: ModelGraph, first: int, last: int) -> str | None:
    """A stage split into builtin operators holds no MAX_POOL_2D that pads its input: the
    split pads a border tile with PAD, whose zero-point fill would take part in the maximum."""
    for op in range(first, last + 1):
        if graph.ops[op].name == "MAX_POOL_2D" and _pads(rf.op_geometry(graph, op)):
            return f"operator {op} (MAX_POOL_2D) pads its input"
    return None


def _pads(geometry: rf.Geometry) -> bool:
    """Whether an operator's window reaches past its input's border on either axis."""
    return any(
        axis.pad_before > 0
        or (axis.out_size - 1) * axis.stride + axis.kernel > axis.pad_before + axis.in_size
        for axis in (geometry.rows, geometry.cols)
    )


# Per execution: rules that only get worse as a stage grows (once broken, no longer stage
# passes them), then rules on where a stage may end.
_GROWTH = {
    TILES: (rule_tile_length, rule_one_input, rule_no_pool),
    STREAM: (rule_length, rule_one_input, rule_pool_last),
    BUILTIN: (rule_tile_length, rule_one_input, rule_no_pool, rule_max_pool_unpadded),
}
_END = {TILES: (rule_closed, rule_downsamples), STREAM: (rule_closed,)}
_END[BUILTIN] = _END[TILES]
TILE_RULES: tuple[StageRule, ...] = (*_GROWTH[TILES], *_END[TILES])
STREAM_RULES: tuple[StageRule, ...] = (*_GROWTH[STREAM], *_END[STREAM])
BUILTIN_RULES: tuple[StageRule, ...] = (*_GROWTH[BUILTIN], *_END[BUILTIN])
STAGE_RULES = TILE_RULES
RULES_BY_EXECUTION = {TILES: TILE_RULES, STREAM: STREAM_RULES, BUILTIN: BUILTIN_RULES}


def _stride(graph: ModelGraph, op: int) -> int:
    geometry = rf.op_geometry(graph, op)
    return max(geometry.rows.stride, geometry.cols.stride)


def operator_problems(model_bytes: bytes, graph: ModelGraph) -> list[str | None]:
    """Per operator: None when it may join a stage, else why not (the rewrite's own rules,
    ``passes.stage_ops``, then whether its receptive field can be computed)."""
    operators = read_model(model_bytes).subgraphs[0].operators
    return [_operator_problem(graph, op, i) for i, op in enumerate(operators)]


def _operator_problem(graph: ModelGraph, op: model_editor.Operator, index: int) -> str | None:
    try:
        stage_ops.check_supported(op, index)
        rf.op_geometry(graph, index)
    except TflmExtError as e:
        return str(e)
    return None


def supported_ops_table() -> str:
    """Markdown listing every rule an operator and a stage must pass (their docstrings)."""
    names = sorted(_builtin_name(code) for code in stage_ops.KINDS)
    lines = [
        "# What a patch stage runs",
        "",
        "Generated by `tflm_ext.stage_rules.supported_ops_table()` from the support rules;",
        "each line is the message a user sees when an operator or a stage breaks it.",
        "",
        f"Operators: {', '.join(names)}.",
        "",
        "| scope | rule | requirement |",
        "|---|---|---|",
    ]
    lines += [f"| operator | `{r.__name__}` | {_doc(r)} |" for r in stage_ops.RULES]
    for execution, rules in RULES_BY_EXECUTION.items():
        lines += [f"| stage ({execution}) | `{r.__name__}` | {_doc(r)} |" for r in rules]
    return "\n".join(lines) + "\n"


def _builtin_name(code: int) -> str:
    return next(n for n, v in vars(schema.BuiltinOperator).items() if v == code)


def _doc(rule) -> str:
    return " ".join((rule.__doc__ or rule.__name__).split())


def stage_problem(
    graph: ModelGraph, first: int, last: int, rules: Sequence[StageRule] = STAGE_RULES
) -> str | None:
    """None when operators first..last form a valid stage under ``rules``, else why not."""
    for rule in rules:
        detail = rule(graph, first, last)
        if detail:
            return f"stage {first}..{last}: {_doc(rule)} Here {detail}."
    return None


def stage_ends(
    graph: ModelGraph, problems: Sequence[str | None], first: int, execution: Execution = TILES
) -> tuple[list[int], str]:
    """Every valid last operator of a stage starting at ``first`` (``problems`` from
    ``operator_problems``) in ``execution``, and why there is none further: the rule the
    next operator or the longest stage breaks."""
    ends, rejected = [], ""
    for last in range(first, len(graph.ops)):
        stop = problems[last] or stage_problem(graph, first, last, _GROWTH[execution])
        if stop:
            return ends, f"{rejected.rstrip('.')}; then {stop}" if rejected and not ends else stop
        problem = stage_problem(graph, first, last, _END[execution])
        if problem:
            rejected = problem
        else:
            ends.append(last)
    return ends, rejected if rejected and not ends else "the graph ends"
