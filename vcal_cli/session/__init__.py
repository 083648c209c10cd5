"""The session layer between the loaders and the commands: the Workbench (one checkpoint and its data, opened once,
every split's features served from the cache) and the preprocessing resolution with its probe."""

from vcal_cli.session.probe import probe_preprocessing
from vcal_cli.session.workbench import Workbench

__all__ = ["Workbench", "probe_preprocessing"]
