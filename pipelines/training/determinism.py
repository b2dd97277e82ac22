"""Deterministic training on a GPU: the setting, and the ops TensorFlow refuses to run on a GPU under it.

With `tf.config.experimental.enable_op_determinism()` a GPU kernel that has no deterministic implementation
raises `UnimplementedError` the first time it runs, so a graph holding one fails at its first step on a GPU
and never on a CPU. `RULES` lists every such refusal of the TensorFlow this project pins (2.21.0): each is an
error message compiled into `libtensorflow_cc.so.2` ("A deterministic GPU implementation of ... is not
currently available", "Determinism is not yet supported for ...", "Deterministic GPU implementation of ...
not available") or a kernel the Python API avoids under determinism (the fused cross-entropy ops). Some
refusals depend on an op's attributes, not its name. `rejected(fn)` finds them in a traced function, counting
only the ops its outputs depend on: TensorFlow prunes the rest (the gradients of frozen layers) before running.

The segment reductions (`UnsortedSegmentSum` and the rest) are not refused in this release: their GPU kernels
switch to deterministic ones when determinism is on (`TF_USE_DETERMINISTIC_SEGMENT_REDUCTIONS` forces that even
without it), and TensorFlow's own deterministic cross-entropy gradient relies on `UnsortedSegmentSum`.

The messages can be listed again after an upgrade with
`strings -n 20 .venv/lib/python3.11/site-packages/tensorflow/libtensorflow_cc.so.2 | grep -i determinis`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# DebugNumericSummaryV2's tensor_debug_mode values (debug_event.proto) that have no deterministic GPU kernel
_HEALTH_MODES = {3: "CONCISE_HEALTH", 4: "FULL_HEALTH"}


@dataclass(frozen=True)
class Rule:
    """An op TensorFlow refuses on a GPU under determinism: `when(attrs)` says whether this node is refused."""

    op: str
    why: str  # TensorFlow's own message, or where the refusal comes from
    when: Callable[[dict[str, Any]], bool] = lambda attrs: True


def _attr(attrs: dict[str, Any], name: str, default: Any = None) -> Any:
    value = attrs.get(name)
    if value is None:
        return default
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else default


def _not_training(attrs: dict[str, Any]) -> bool:
    return not _attr(attrs, "is_training", True)


def _refused(ops: tuple[str, ...], why: str, when: Callable[[dict[str, Any]], bool] | None = None) -> list[Rule]:
    return [Rule(op, why, when) if when else Rule(op, why) for op in ops]


RULES: dict[str, Rule] = {r.op: r for r in [
    *_refused(("AdjustContrast", "AdjustContrastv2"),
              "A deterministic GPU implementation of AdjustContrastv2 is not currently available "
              "(tf.image.adjust_contrast, Keras's RandomContrast; keras-team/keras#19197)"),
    *_refused(("ResizeNearestNeighborGrad",),
              "A deterministic GPU implementation of ResizeNearestNeighborGrad is not currently available"),
    *_refused(("SparseTensorDenseMatMul",),
              "A deterministic GPU implementation of SparseTensorDenseMatmulOp is not currently available"),
    *_refused(("FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3"),
              "A deterministic GPU implementation of fused batch-norm backprop, when training is disabled, is not "
              "currently available (a gradient through a BatchNormalization layer in inference mode)",
              _not_training),
    *_refused(("Dilation2DBackpropFilter", "Dilation2DBackpropInput", "MaxPoolGradWithArgmax"),
              "Determinism is not yet supported for this op"),
    *_refused(("Bincount", "DenseBincount"), "Determinism is not yet supported in GPU implementation of Bincount"),
    *_refused(("FakeQuantWithMinMaxVarsGradient", "FakeQuantWithMinMaxVarsPerChannelGradient"),
              "Determinism is not yet supported in GPU implementation of FakeQuantWithMinMaxVars gradients"),
    *_refused(("CropAndResizeGradBoxes", "CropAndResizeGradImage"),
              "Deterministic GPU implementation of CropAndResizeBackprop not available"),
    *_refused(("Svd",), "Determinism is not yet supported for SVD of matrices with 1 column (the column count is "
                        "a runtime shape: every Svd is refused here)"),
    *_refused(("Timestamp",), "Timestamp cannot be called when determinism is enabled"),
    *_refused(("ScatterAdd", "ScatterSub", "ScatterMul", "ScatterDiv", "ScatterMin", "ScatterMax", "ScatterUpdate",
               "ScatterNdAdd", "ScatterNdSub", "ScatterNdUpdate"),
              "Determinism is not yet supported in GPU implementation of Scatter ops with ref inputs"),
    *_refused(("SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"),
              "The GPU implementation of (Sparse)SoftmaxCrossEntropyWithLogits is not deterministic; the Python API "
              "takes another path when determinism is on at trace time, so the op in a graph means it was traced "
              "with determinism off"),
    *_refused(("DebugNumericSummaryV2",),
              "Determinism is not yet supported for DebugNumericSummaryV2 when tensor_debug_mode is CONCISE_HEALTH "
              "or FULL_HEALTH", lambda attrs: _attr(attrs, "tensor_debug_mode", 0) in _HEALTH_MODES),
]}

# function-valued attributes of control-flow and call ops: the functions they run
_FUNCTION_ATTRS = ("f", "body", "cond", "then_branch", "else_branch", "branches")


@dataclass(frozen=True)
class Finding:
    op: str
    node: str
    function: str  # the function of the graph's library the node sits in ("" for the top graph)
    why: str

    def __str__(self) -> str:
        where = f" in {self.function}" if self.function else ""
        return f"{self.op} ({self.node}{where}): {self.why}"


def _called(node) -> list[str]:
    names = []
    for attr in _FUNCTION_ATTRS:
        if attr not in node.attr:
            continue
        value = node.attr[attr]
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def _source(name: str) -> str:
    """A node input's node: `node:out:0`, `node:0` and `^node` all name `node`."""
    return name.lstrip("^").split(":", 1)[0]


def reachable_nodes(graph_def, roots: list[str]) -> list[tuple[str, Any]]:
    """Every node that the nodes `roots` depend on, with the functions its reachable call and control-flow nodes
    run, as (function name, or "" for the top graph; node). A function's own roots are its `ret` and
    `control_ret`."""
    library = {f.signature.name: f for f in graph_def.library.function}
    found: list[tuple[str, Any]] = []
    seen_functions: set[str] = set()

    def walk(nodes, start: list[str], function: str) -> None:
        by_name = {n.name: n for n in nodes}
        todo, seen = list(start), set()
        while todo:
            name = todo.pop()
            if name in seen or name not in by_name:
                continue  # a function's own arguments are not nodes
            seen.add(name)
            node = by_name[name]
            found.append((function, node))
            todo.extend(_source(i) for i in node.input)
            for called in [*_called(node), node.op]:  # a node may also be a call of a library function by name
                if called in library and called not in seen_functions:
                    seen_functions.add(called)
                    f = library[called]
                    walk(f.node_def, [_source(v) for v in [*f.ret.values(), *f.control_ret.values()]], called)

    walk(graph_def.node, roots, "")
    return found


def rejected(fn) -> list[Finding]:
    """The ops of a traced function (a `ConcreteFunction`) that a GPU refuses under determinism. Its roots are its
    outputs and the ops it must run for their effects (variable updates: `control_outputs`)."""
    roots = [t.op.name for t in fn.outputs] + [op.name for op in fn.graph.control_outputs]
    out = []
    for function, node in reachable_nodes(fn.graph.as_graph_def(), roots):
        rule = RULES.get(node.op)
        if rule and rule.when(dict(node.attr)):
            out.append(Finding(node.op, node.name, function, rule.why))
    return out


def apply(deterministic: bool) -> None:
    """Turn op determinism on for this process when asked, before anything is traced: TensorFlow chooses a kernel
    when a function is traced (the cross-entropy path) and when it first runs (cuDNN's algorithms). Once on, it
    stays on in the process (TensorFlow has no public switch back); a study's trials all share the setting."""
    if deterministic:
        from pipelines.bootstrap import tensorflow

        tensorflow().config.experimental.enable_op_determinism()
