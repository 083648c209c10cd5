"""Compiled and exported classifiers: TorchScript (`torch.jit.save`), `torch.export` programs (`.pt2`) and ONNX.

None of these is a Python module vcal can hook, so each is split at its final linear layer into a `ProgramClassifier`:
`body(x)` is the program itself, asked for the input of that layer (the penultimate features) instead of its
output, and `head` is an ordinary `nn.Linear` holding the layer's weights. Then extraction, the cache, every head and
`--head-file` work as on any model. On the first batch the split is checked: `head(body(x))` must equal the program's
own output (1e-4 relative), or extraction stops with the reason.

How each is split:
- TorchScript: the inlined graph's last `aten::linear` / `aten::addmm` whose weight is a module attribute; the graph's
  outputs are replaced by its input (the graph is copied; the loaded program is not changed).
- `torch.export`: the same node in the program's FX graph (`ExportedProgram.module()`).
- ONNX (onnxruntime): the last `Gemm`, or `MatMul` + `Add`, with initializer weights; its input becomes an extra graph
  output.
Programs exported with a fixed batch size (`.pt2`, ONNX) are fed in batches of that size (the last one padded).

Trust: `torch.jit.load` and `torch.export.load` unpickle (PyTorch's documentation for both warns that loading can run
arbitrary code), so both need `--trust-checkpoint`. An ONNX file is a protobuf run by onnxruntime, which runs no Python;
it needs no flag (custom-op libraries are never registered).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vcal_cli.errors import CheckpointError

KINDS = ("torchscript", "export", "onnx")
Fn = Callable[[Tensor], Tensor]
EXPORT_INSTEAD = (
    "save model.state_dict() with torch.save and pass --arch, or compute features and logits yourself and give them "
    "to vcal as a feature file (docs/formats.md)"
)


class ProgramClassifier(nn.Module):
    """A program split at its last linear layer: `head(body(x))` is the program's output.

    The first batch also runs the whole program (`full`) and the split must give its logits (1e-4, relative to their
    scale), or extraction stops with the reason: a split that drifted from the program never reaches a report."""

    def __init__(
        self,
        body: Fn,
        full: Fn,
        head: nn.Linear,
        kind: str,
        program: nn.Module | None = None,
    ):
        super().__init__()
        self.kind = kind
        self.program = program  # the TorchScript / FX module the body runs (moves with .to()); None for ONNX
        self._body, self._full = body, full
        self.head = head
        self.verified = False

    def train(self, mode: bool = True) -> ProgramClassifier:
        """Only the head has a mode: a program was compiled or exported in its own (eval) mode, and an exported
        one refuses `train()`."""
        self.training = mode
        self.head.train(mode)
        return self

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(self._body(x).flatten(1))
        if not self.verified:
            self.check(x, logits)
        return logits

    def check(self, x: Tensor, logits: Tensor) -> None:
        expected = self._full(x)
        expected = expected[0] if isinstance(expected, tuple | list) else expected
        gap = (logits.float() - expected.float().to(logits.device)).abs().max().item()
        scale = max(1.0, expected.abs().max().item())
        tol = 1e-4 if logits.dtype == torch.float32 else 3e-2  # under bf16/fp16 autocast both sides round
        if gap > tol * scale:
            raise CheckpointError(
                f"this {self.kind} program's last linear layer is not its output layer (the split differs from the "
                f"program by {gap:.3g})",
                hint=EXPORT_INSTEAD,
            )
        self.verified = True

    def __deepcopy__(self, memo: dict[int, Any]) -> ProgramClassifier:
        """Copies share the program (it is never changed) and own their head: `LoadedModel.with_head` swaps it; a
        copy with another head is not compared with the program."""
        twin = ProgramClassifier(self._body, self._full, copy.deepcopy(self.head, memo), self.kind, self.program)
        twin.verified = True
        return twin


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight.detach().float())
        if bias is not None:
            head.bias.copy_(bias.detach().float())
    return head.eval()


def _fixed_batch(fn: Fn, batch: int | None) -> Fn:
    """`fn` for a program exported with a fixed batch size: chunks of exactly that size, the last one padded."""
    if not batch:
        return fn

    def run(x: Tensor) -> Tensor:
        out = []
        for chunk in x.split(batch):
            n = len(chunk)
            if n < batch:
                chunk = torch.cat([chunk, chunk[-1:].expand(batch - n, *chunk.shape[1:])])
            out.append(fn(chunk)[:n])
        return torch.cat(out)

    return run


# --- TorchScript ---------------------------------------------------------------------------------------------------


def _walk(block: Any) -> Any:
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from _walk(sub)


def _resolve(owner: Any, names: list[str]) -> Any:
    """`owner.a.b.c` for names [a, b, c]: a module attribute named by its path (TorchScript and FX alike)."""
    for name in names:
        owner = getattr(owner, name)
    return owner


def _attr_path(value: Any) -> list[str] | None:
    """The attribute chain (`fc`, `weight`) a TorchScript value is read from, or None if it is not a module attr."""
    names = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.inputsAt(0).node()
    return names[::-1] if names and node.kind() == "prim::Param" else None


def _script_split(program: Any) -> tuple[Fn, nn.Linear, str]:
    graph = program.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    found = None
    for node in _walk(graph.block()):
        if node.kind() == "aten::linear":
            found = (node.inputsAt(0), node.inputsAt(1), node.inputsAt(2))
        elif node.kind() == "aten::addmm":  # traced nn.Linear in older exports: addmm(bias, x, weight.t())
            t = node.inputsAt(2).node()
            if t.kind() == "aten::t":
                found = (node.inputsAt(1), t.inputsAt(0), node.inputsAt(0))
    if found is None:
        raise CheckpointError("a TorchScript program with no linear layer in its forward", hint=EXPORT_INSTEAD)
    feats, w_value, b_value = found
    w_path = _attr_path(w_value)
    if w_path is None:
        raise CheckpointError("a TorchScript program whose last linear layer's weight is computed", hint=EXPORT_INSTEAD)
    if feats.node().owningBlock() != graph.block() and feats.node().kind() != "prim::Param":
        raise CheckpointError("a TorchScript program whose last linear layer runs inside a branch", hint=EXPORT_INSTEAD)
    b_path = _attr_path(b_value) if b_value.type().kind() != "NoneType" else None
    weight, bias = _resolve(program, w_path), _resolve(program, b_path) if b_path else None
    for _ in range(len(list(graph.outputs()))):
        graph.eraseOutput(0)
    graph.registerOutput(feats)
    torch._C._jit_pass_dce(graph)
    features = torch._C._create_function_from_graph("vcal_features", graph)
    return (lambda x: features(program._c, x)), _linear(weight, bias), ".".join(w_path[:-1])


# --- torch.export ----------------------------------------------------------------------------------------------------


def _fx_split(gm: Any) -> tuple[Fn, nn.Linear, str, nn.Module]:
    graph = gm.graph
    linears = [n for n in graph.nodes if n.op == "call_function" and str(n.target).startswith("aten.linear")]
    if not linears:
        raise CheckpointError("a torch.export program with no linear layer", hint=EXPORT_INSTEAD)
    last = linears[-1]
    feats, w, b = (list(last.args) + [None])[:3]
    if getattr(w, "op", None) != "get_attr" or (b is not None and getattr(b, "op", None) != "get_attr"):
        raise CheckpointError(
            "a torch.export program whose last linear layer's weight is computed", hint=EXPORT_INSTEAD
        )
    weight = _resolve(gm, w.target.split("."))
    bias = _resolve(gm, b.target.split(".")) if b is not None else None
    body = copy.deepcopy(gm)
    out = next(n for n in body.graph.nodes if n.op == "output")
    feats_copy = next(n for n in body.graph.nodes if n.name == feats.name)
    out.args = ((feats_copy,),) if isinstance(out.args[0], tuple | list) else (feats_copy,)
    body.graph.eliminate_dead_code()
    body.recompile()

    def run(x: Tensor) -> Tensor:
        y = body(x)
        return y[0] if isinstance(y, tuple | list) else y

    return run, _linear(weight, bias), str(w.target).rsplit(".", 1)[0], body


def _fx_batch(program: Any) -> int | None:
    """The fixed batch size of an exported program's image input, or None when it is dynamic."""
    sig = program.graph_signature
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name not in {**sig.inputs_to_parameters, **sig.inputs_to_buffers}:
            val = node.meta.get("val")
            if val is not None and val.ndim >= 1:
                return val.shape[0] if isinstance(val.shape[0], int) else None
    return None


# --- ONNX ------------------------------------------------------------------------------------------------------------


def _onnx_split(path: Path) -> tuple[Fn, Fn, nn.Linear, str, int | None]:
    try:
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper
    except ImportError:
        raise CheckpointError(
            f"'{path}' is an ONNX model; reading it needs onnxruntime",
            hint='pip install "vcal[onnx]"',
        ) from None
    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as e:  # a truncated or foreign protobuf, or a missing external data file
        raise CheckpointError(f"'{path}' is not a readable ONNX model ({type(e).__name__}: {e})") from e
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found = None
    for n in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Gemm" and len(n.input) >= 2 and n.input[1] in inits and not attrs.get("transA", 0):
            w = numpy_helper.to_array(inits[n.input[1]])
            w = w if attrs.get("transB", 0) else w.T
            alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
            b = numpy_helper.to_array(inits[n.input[2]]) * beta if len(n.input) > 2 and n.input[2] in inits else None
            found = (n.input[0], w * alpha, b, n.name)
        elif n.op_type == "MatMul" and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]])
            if w.ndim != 2:
                continue
            adds = [c for c in consumers.get(n.output[0], []) if c.op_type == "Add"]
            b = None
            if adds:
                other = next((i for i in adds[0].input if i != n.output[0]), None)
                b = numpy_helper.to_array(inits[other]) if other in inits else None
            found = (n.input[0], w.T, b, n.name)
    if found is None:
        raise CheckpointError(f"'{path}' is an ONNX model with no Gemm or MatMul layer at its end", hint=EXPORT_INSTEAD)
    feat_name, w, b, node_name = found
    logits_name = g.output[0].name
    if feat_name not in {o.name for o in g.output}:
        g.output.append(onnx.helper.make_tensor_value_info(feat_name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime refuses graphs it cannot run (an op it lacks, a bad opset)
        raise CheckpointError(f"onnxruntime cannot run '{path}' ({type(e).__name__}: {e})") from e
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CheckpointError(f"'{path}' takes {len(inputs)} inputs; vcal feeds a classifier one image batch")
    shape = inputs[0].shape
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    chans = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else None
    name = inputs[0].name

    def output(which: str) -> Fn:
        def run(x: Tensor) -> Tensor:
            out = session.run([which], {name: x.detach().float().cpu().contiguous().numpy()})[0]
            return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)

        return _fixed_batch(run, batch)

    head = _linear(torch.from_numpy(np.array(w, dtype=np.float32)), None if b is None else torch.from_numpy(b))
    return output(feat_name), output(logits_name), head, node_name or feat_name, chans


# --- loading ---------------------------------------------------------------------------------------------------------


def load_program(path: Path, kind: str) -> tuple[ProgramClassifier, str, int | None]:
    """(the split model, the layer it was split at, input channels where the program fixes them)."""
    if kind == "onnx":
        body, full, head, where, chans = _onnx_split(path)
        return ProgramClassifier(body, full, head, kind), where, chans
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "torchscript":
                program = torch.jit.load(str(path), map_location="cpu")
            else:
                program = torch.export.load(path)
        except Exception as e:  # a program from another torch version, or a damaged file
            raise CheckpointError(f"'{path}' could not be loaded as a {kind} program ({type(e).__name__}: {e})") from e
    if kind == "torchscript":
        program.eval()
        body, head, where = _script_split(program)
        return ProgramClassifier(body, program, head, kind, program), where, first_conv_chans(program)  # type: ignore[arg-type]
    gm = program.module()
    body, head, where, fx = _fx_split(gm)
    batch = _fx_batch(program)
    model = ProgramClassifier(_fixed_batch(body, batch), _fixed_batch(gm, batch), head, kind, nn.ModuleList([fx, gm]))
    return model, where, first_conv_chans(gm)


def first_conv_chans(module: nn.Module) -> int | None:
    """The input channels of a model's first convolution (its first 4-d parameter), if it has one."""
    first = next((p for p in module.parameters() if p.ndim == 4), None)
    return int(first.shape[1]) if first is not None else None
