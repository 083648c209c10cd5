"""Find a classifier's final linear layer: its input is the penultimate feature vector."""

from __future__ import annotations

from torch import nn

from vcal_cli.errors import CheckpointError


def _name_of(model: nn.Module, target: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if module is target:
            return name
    return None


def find_head(model: nn.Module, num_classes: int | None = None, override: str | None = None) -> str:
    """Dotted name of the head `nn.Linear`.

    Order: `override` (`--head-module`), timm's `get_classifier()`, torchvision's `fc`,
    `classifier[-1]`, `heads.head`, then the last `nn.Linear` whose `out_features == num_classes`
    (or simply the last `nn.Linear` when the class count is unknown).
    """
    modules = dict(model.named_modules())
    if override:
        if override not in modules:
            linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            raise CheckpointError(
                f"--head-module '{override}' is not a module of this model",
                hint=f"its nn.Linear modules are: {', '.join(linear[-5:]) or 'none'}",
            )
        if not isinstance(modules[override], nn.Linear):
            raise CheckpointError(
                f"--head-module '{override}' is a {type(modules[override]).__name__}, "
                "not an nn.Linear; name the final linear layer"
            )
        return override
    candidates: list[nn.Module | None] = []
    if hasattr(model, "get_classifier"):
        try:
            candidates.append(model.get_classifier())
        except Exception:  # a custom get_classifier may fail; fall through to the others
            pass
    candidates.append(getattr(model, "fc", None))
    clf = getattr(model, "classifier", None)
    candidates.append(clf[-1] if isinstance(clf, nn.Sequential) and len(clf) else clf)
    heads = getattr(model, "heads", None)
    candidates.append(getattr(heads, "head", None))
    for cand in candidates:
        if isinstance(cand, nn.Linear) and (num_classes is None or cand.out_features == num_classes):
            name = _name_of(model, cand)
            if name:
                return name
    linear = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear)]
    fitting = [n for n, m in linear if num_classes is None or m.out_features == num_classes]
    if fitting:
        return fitting[-1]
    raise CheckpointError(
        f"found no nn.Linear head with {num_classes} outputs in {type(model).__name__}",
        hint="name it with --head-module (a dotted module name)",
    )
