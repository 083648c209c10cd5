"""The recalibrated model in the format it came in: `vcal retrain ... --export onnx|torchscript|transformers`.

A head that is one linear map of the features (temperature scaling, vector and matrix scaling, the original head) is
folded into the model's last linear layer: logits' = W' f + b' with, for temperature T, W' = W / T and b' = b / T; for
vector scaling (w, c), W' = diag(w) W and b' = w * b + c; for matrix scaling (M, c), W' = M W and b' = M b + c. The
softmax of those logits is the head's prediction exactly (the head's log_softmax only shifts each row). The exported
file is the input file with that layer's weights replaced, nothing else touched:

- ONNX: the initializers of the last `Gemm` (or `MatMul` + `Add`) that vcal split the graph at (`onnx` library);
- TorchScript: the parameters of the module that holds the last linear layer (`torch.jit.load`, then `save`);
- transformers: the classifier of the model, written with `save_pretrained` (config and preprocessor file kept).

Other heads (a network, a non-linear map) cannot be one linear layer. For ONNX the graph is cut at the features
vcal split it at and the head, exported by `torch.onnx.export` and followed by an identity linear layer (so the
program still ends in one, where vcal splits it: its features are then the head's log-probabilities), is composed
after them with `onnx.compose`; a head with an operation ONNX cannot express is one line. TorchScript and
transformers take the linear heads only; asked for another, vcal says so in one line before anything is fitted.
"""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli.checkpoints.loader import LoadedModel
from vcal_cli.errors import CheckpointError, UsageError
from vcal_cli.heads.base import HeadModule

FORMATS = ("onnx", "torchscript", "transformers")
FOLDABLE = ("temperature", "vector", "matrix")  # heads whose module is one linear map of the features


def model_format(loaded: LoadedModel) -> str | None:
    """The export format a model came in: 'onnx', 'torchscript' or 'transformers' (None: a vcal checkpoint or a
    state dict, which `retrain` writes as vcal checkpoints)."""
    if loaded.program in ("onnx", "torchscript"):
        return loaded.program
    return "transformers" if loaded.arch.startswith("transformers:") else None


def check_export(fmt: str | None, loaded: LoadedModel, heads: list[str]) -> None:
    """Before any fitting: the format is the model's own and every head can be folded into its last layer."""
    if fmt is None:
        return
    if fmt not in FORMATS:
        raise UsageError(f"--export '{fmt}' is not a format; choose from: {', '.join(FORMATS)}")
    own = model_format(loaded)
    if own != fmt:
        came = f"a {own} model" if own else "a checkpoint vcal writes as its own"
        raise UsageError(f"--export {fmt}: '{loaded.path}' is {came}", hint="export in the format the model came in")
    bad = [h for h in heads if h.removesuffix("+temperature") not in FOLDABLE]
    if bad and fmt != "onnx":
        raise UsageError(
            f"--export {fmt}: head '{bad[0]}' is not one linear layer, so it cannot be folded into the model's",
            hint=f"export {', '.join(FOLDABLE)} (or NAME+temperature of them) to {fmt}; other heads go to ONNX "
            "(--export onnx) or as a head file (--head-only)",
        )


def folded(module: nn.Module) -> tuple[Tensor, Tensor] | None:
    """(W', b') of a head that is one linear map of the features (`HeadModule.as_linear`), or None."""
    if isinstance(module, nn.Linear):
        b = module.bias if module.bias is not None else torch.zeros(module.out_features)
        return module.weight.detach().double(), b.detach().double()
    return module.as_linear() if isinstance(module, HeadModule) else None


def export(loaded: LoadedModel, module: nn.Module, fmt: str, out: Path) -> Path:
    """Write `loaded` with `module` in `fmt` at `out` (a file, or a folder for transformers): folded into its last
    linear layer when the head is one linear map, else (ONNX) the head appended to the program's features, ending in
    an identity linear layer; the input is never written over."""
    if loaded.path is not None and Path(out).resolve() == Path(loaded.path).resolve():
        raise UsageError(f"refusing to write '{out}' over the model", hint="choose another --out")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fold = folded(module)
    if fold is None:
        if fmt != "onnx":
            raise UsageError(f"--export {fmt}: this head is not one linear layer")
        _onnx_appended(loaded, module, Path(out))
        return Path(out)
    w, b = fold
    {"onnx": _onnx, "torchscript": _torchscript, "transformers": _transformers}[fmt](loaded, w, b, Path(out))
    return Path(out)


class HeadThenIdentity(nn.Module):
    """A head's log-probabilities through an identity linear layer: the exported program still ends in a linear
    layer, so vcal splits it there (its features are then the head's log-probabilities, its logits the same)."""

    def __init__(self, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.head = head
        self.out = nn.Linear(num_classes, num_classes)
        with torch.no_grad():
            self.out.weight.copy_(torch.eye(num_classes))
            self.out.bias.zero_()

    def forward(self, features: Tensor) -> Tensor:
        return self.out(self.head(features))


def _onnx_appended(loaded: LoadedModel, module: nn.Module, out: Path) -> None:
    """The program's graph cut at the features vcal split it at, the head (exported by `torch.onnx.export`)
    composed after them with `onnx.compose`."""
    import onnx
    from onnx import compose, helper

    model = onnx.load(str(loaded.path), load_external_data=True)
    g = model.graph
    node = _split_node(loaded, g)
    features = node.input[0]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    buf = io.BytesIO()
    head = HeadThenIdentity(module, loaded.num_classes).eval()
    example = torch.zeros(2, loaded.head.in_features)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                (example,),
                buf,
                dynamo=False,
                input_names=["features"],
                output_names=["log_probs"],
                dynamic_axes={"features": {0: "batch"}, "log_probs": {0: "batch"}},
                opset_version=min(opset, 20),
            )
    except Exception as e:  # an operation ONNX has no form for (a sorted search, ...)
        raise UsageError(
            f"--export onnx: this head has an operation ONNX cannot express ({type(e).__name__})"
        ) from None
    part = compose.add_prefix(onnx.load_from_string(buf.getvalue()), "vcal_head/")
    part.ir_version = model.ir_version
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
    merged = compose.merge_models(model, part, io_map=[(features, "vcal_head/features")])
    _save_onnx(merged, out)


def _onnx(loaded: LoadedModel, w: Tensor, b: Tensor, out: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(loaded.path), load_external_data=True)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    node = _split_node(loaded, g)
    w32, b32 = w.float().numpy(), b.float().numpy()
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(w32 if attrs.get("transB", 0) else w32.T, node.input[1]))
        for a in node.attribute:
            if a.name in ("alpha", "beta"):
                a.f = 1.0
        if len(node.input) > 2 and node.input[2] in inits:
            inits[node.input[2]].CopyFrom(numpy_helper.from_array(b32, node.input[2]))
        else:
            name = f"{node.name or 'vcal'}_bias"
            g.initializer.append(numpy_helper.from_array(b32, name))
            del node.input[2:]
            node.input.append(name)
        return _save_onnx(model, out)
    inits[node.input[1]].CopyFrom(numpy_helper.from_array(w32.T, node.input[1]))
    add = next((n for n in g.node if n.op_type == "Add" and node.output[0] in n.input), None)
    other = next((i for i in add.input if i != node.output[0]), None) if add is not None else None
    if other not in inits:
        raise CheckpointError(f"'{loaded.path}': its last MatMul has no bias to fold the head's into")
    inits[other].CopyFrom(numpy_helper.from_array(b32.reshape(numpy_helper.to_array(inits[other]).shape), other))
    _save_onnx(model, out)


def _split_node(loaded: LoadedModel, g: Any) -> Any:
    """The graph's `Gemm` or `MatMul` node vcal split the program at when it loaded it (`programs._onnx_split`)."""
    layer = loaded.metadata.get("program_layer", "")
    node = next((n for n in g.node if layer in (n.name, n.input[0]) and n.op_type in ("Gemm", "MatMul")), None)
    if node is None:
        raise CheckpointError(f"'{loaded.path}': the layer vcal split the graph at ('{layer}') is gone")
    return node


def _save_onnx(model: object, out: Path) -> None:
    import onnx

    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)


def _torchscript(loaded: LoadedModel, w: Tensor, b: Tensor, out: Path) -> None:
    with warnings.catch_warnings():  # torch deprecates TorchScript; the model came in it, so it goes out in it
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.jit.load(str(loaded.path), map_location="cpu")
    owner = program
    for name in loaded.metadata.get("program_layer", "").split("."):
        if name:
            owner = getattr(owner, name)
    weight, bias = getattr(owner, "weight", None), getattr(owner, "bias", None)
    if weight is None or bias is None or tuple(weight.shape) != tuple(w.shape):
        raise CheckpointError(f"'{loaded.path}': its last linear layer has no bias (or another shape) to fold into")
    with torch.no_grad():
        weight.copy_(w.to(weight.dtype))
        bias.copy_(b.to(bias.dtype))
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(program, str(tmp))
    tmp.replace(out)


def _transformers(loaded: LoadedModel, w: Tensor, b: Tensor, out: Path) -> None:
    hf = loaded.model.model  # HFImageClassifier wraps the transformers model
    head = loaded.head
    with torch.no_grad():
        old = head.weight.detach().clone(), head.bias.detach().clone()
        head.weight.copy_(w.to(head.weight.dtype))
        head.bias.copy_(b.to(head.bias.dtype))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf.save_pretrained(str(tmp), safe_serialization=True)
        source = Path(loaded.path) if loaded.path else None
        if source is not None and (source / "preprocessor_config.json").exists():
            shutil.copy2(source / "preprocessor_config.json", tmp / "preprocessor_config.json")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        with torch.no_grad():  # the loaded model stays the original (its head is audited as 'original')
            head.weight.copy_(old[0])
            head.bias.copy_(old[1])
