"""What a patch stage is: its support rules, its tile chain and what it costs on a grid.

Called by ``tflm_ext.planner`` (which searches stages and grids) and usable by anyone who
wants to know why an operator range cannot be fused. Operator rules are the rewrite's own
(``passes.stage_ops.RULES``), so the planner never proposes a stage the rewrite refuses;
the stage rules here are functions whose docstring is the user-facing message and which
return None when the stage passes, else a detail naming the offending value.

What a fused stage costs in the arena (the kernel's contract, ``kernels/patch_stage.h``):
    working set = align16(stage input) + align16(stage output) + align16(scratch)
where the scratch holds every intermediate tensor's largest window over the grid's tiles,
laid out so that windows alive at the same time never overlap (0 for a one-op stage):
``receptive_field.grid_cost``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext import receptive_field as rf
from tflm_ext.errors import TflmExtError
from tflm_ext.interpreter import ARENA_ALIGNMENT, align_up
from tflm_ext.model_graph import ModelGraph
from tflm_ext.passes import stage_ops
from tflm_ext.patch_op import MAX_OPS
from tflm_ext.tflite_file import read_model

StageRule = Callable[[ModelGraph, int, int], "str | None"]


@dataclass(frozen=True)
class StageCost:
    """A stage on a grid: its input and output tensors, the kernel's scratch request, its
    working set and the MACs it recomputes."""

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
) -> StageCost:
    """What fusing operators first..last over grid allocates and recomputes (pass the
    stage's chain when it is already built)."""
    chain = stage_chain(graph, first, last) if chain is None else chain
    source, target = graph.activation_inputs(first)[0], graph.ops[last].outputs[0]
    cost = rf.grid_cost(chain, grid)
    working_set = sum(
        align_up(n, ARENA_ALIGNMENT)
        for n in (graph.tensors[source].nbytes, graph.tensors[target].nbytes, cost.scratch_bytes)
    )
    return StageCost(source, target, cost.scratch_bytes, working_set, cost.extra_macs)


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
    """A stage holds at most MAX_OPS (32) operators, the kernel's fixed bookkeeping."""
    return None if last - first + 1 <= MAX_OPS else f"it holds {last - first + 1}"


STAGE_RULES: tuple[StageRule, ...] = (rule_length, rule_one_input, rule_closed, rule_downsamples)
# The first two only get worse as a stage grows: once broken, no longer stage passes them.
GROWTH_RULES, END_RULES = STAGE_RULES[:2], STAGE_RULES[2:]


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
    lines += [f"| stage | `{r.__name__}` | {_doc(r)} |" for r in STAGE_RULES]
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
    graph: ModelGraph, problems: Sequence[str | None], first: int
) -> tuple[list[int], str]:
    """Every valid last operator of a stage starting at ``first`` (``problems`` from
    ``operator_problems``), and why there is none further: the rule the next operator or
    the longest stage breaks."""
    ends, rejected = [], ""
    for last in range(first, len(graph.ops)):
        stop = problems[last] or stage_problem(graph, first, last, GROWTH_RULES)
        if stop:
            return ends, f"{rejected.rstrip('.')}; then {stop}" if rejected and not ends else stop
        problem = stage_problem(graph, first, last, END_RULES)
        if problem:
            rejected = problem
        else:
            ends.append(last)
    return ends, rejected if rejected and not ends else "the graph ends"
