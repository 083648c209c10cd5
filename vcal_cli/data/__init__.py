"""Data sets by name: `digits`, `svhn`, `cifar10`, `cifar100`, `mnist`, `fashion-mnist`,
`imagefolder:PATH`, `npz:PATH` (`vcal_cli.data.sources`). See `vcal_cli.data.splits` for the split rule."""

from vcal_cli.data import digits, files, idx, torchvision_sets
from vcal_cli.data.base import SOURCES, ImageSplit
from vcal_cli.data.preprocessing import DATA_STATS, Preprocessing, probe_candidates, resolve_preprocessing
from vcal_cli.data.sources import data_names, load_split
from vcal_cli.data.splits import SPLITS, VAL_FROM

__all__ = [
    "DATA_STATS",
    "SOURCES",
    "SPLITS",
    "VAL_FROM",
    "ImageSplit",
    "Preprocessing",
    "data_names",
    "digits",
    "files",
    "idx",
    "load_split",
    "probe_candidates",
    "resolve_preprocessing",
    "torchvision_sets",
]
