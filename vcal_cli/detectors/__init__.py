"""Out-of-distribution detectors on cached features and outputs, one registry (`DETECTORS`), fitted once on the train
split: `vcal audit --ood SET --ood-detectors NAMES` reports each with bootstrap intervals and paired verdicts."""

from vcal_cli.detectors import choice, ensemble, gaussian, knn, react, softmax, vim
from vcal_cli.detectors.base import DETECTORS, Detector, Linear, Scored, Train
from vcal_cli.detectors.choice import DEFAULT, ORDER, parse_detectors

__all__ = [
    "DEFAULT",
    "DETECTORS",
    "Detector",
    "Linear",
    "ORDER",
    "Scored",
    "Train",
    "choice",
    "ensemble",
    "gaussian",
    "knn",
    "parse_detectors",
    "react",
    "softmax",
    "vim",
]
