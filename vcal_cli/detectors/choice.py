"""Which detectors a run scores: the report's order, the default set and the `--ood-detectors` parser."""

from __future__ import annotations

from vcal_cli.errors import UsageError

# the report's order: the softmax baselines (MSP first: every detector is compared with it), then the feature-space ones
ORDER = (
    "msp",
    "entropy",
    "max_logit",
    "energy",
    "gen",
    "mahalanobis",
    "relative_mahalanobis",
    "knn",
    "vim",
    "react",
    "mutual_info",
    "disagreement",
)
# The default is every detector: on a CIFAR-sized cache the whole set fits and scores in seconds, and at ImageNet
# shape it stays within this machine (docs/performance.md has each one's time and memory). A user comparing
# against pytorch-ood or OpenOOD wants them side by side; `--ood-detectors msp,energy` keeps a run short.
DEFAULT = ORDER


def parse_detectors(spec: str) -> tuple[str, ...]:
    """'all' or a comma-separated list of names -> the names in the report's order, validated. MSP is always in:
    it is the baseline of every paired verdict (and the `--protocol` tables' OOD score)."""
    if spec.strip() == "all":
        return DEFAULT
    names = {x.strip() for x in spec.split(",") if x.strip()}
    if not names:
        raise UsageError("--ood-detectors is empty; give 'all' or names such as msp,knn,vim")
    unknown = sorted(names - set(ORDER))
    if unknown:
        raise UsageError(f"--ood-detectors: unknown detector '{unknown[0]}'; choose 'all' or from: {', '.join(ORDER)}")
    return tuple(n for n in ORDER if n in names | {"msp"})
