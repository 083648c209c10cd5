"""How every metric is estimated (`Statistics`: bins, bootstrap resamples, seed), declared once for every command
and every layer that estimates. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vcal_cli._defaults import DEFAULT_N_BINS, DEFAULT_N_BOOTSTRAP, MAX_BINS, MAX_BOOTSTRAP, MAX_SEED
from vcal_cli.errors import UsageError

__all__ = ["Statistics", "whole"]


def whole(value: Any) -> bool:
    """An int, not a bool (a flag value given from Python may be either)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class Statistics:
    """How every metric is estimated: equal-width bins, bootstrap resamples of the intervals and verdicts, and
    the seed of those resamples (and of every fitted head)."""

    n_bins: int = DEFAULT_N_BINS
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP
    seed: int = 0

    def __post_init__(self) -> None:
        if not whole(self.n_bins) or not 1 <= self.n_bins <= MAX_BINS:
            raise UsageError(f"--bins {str(self.n_bins)[:20]} must be an integer from 1 to {MAX_BINS}")
        if not whole(self.n_bootstrap) or not 0 <= self.n_bootstrap <= MAX_BOOTSTRAP:
            raise UsageError(f"--bootstrap {str(self.n_bootstrap)[:20]} must be 0 or more (at most {MAX_BOOTSTRAP})")
        if self.n_bootstrap == 1:  # one resample has no spread: every interval would be NaN
            raise UsageError(
                "--bootstrap 1 gives no interval: a spread needs at least 2 resamples",
                hint=f"use 0 (no intervals) or 2..{MAX_BOOTSTRAP} (default {DEFAULT_N_BOOTSTRAP})",
            )
        if not whole(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed {str(self.seed)[:20]} must be an integer from 0 to {MAX_SEED}")

    def to_dict(self) -> dict[str, int]:
        """report.json's `settings` keys for these."""
        return {"bins": self.n_bins, "bootstrap": self.n_bootstrap, "seed": self.seed}
