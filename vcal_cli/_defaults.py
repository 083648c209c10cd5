"""The metric defaults every command shares (torch-free, so the CLI's help shows them without loading torch)."""

DEFAULT_N_BINS = 15  # equal-width bins of ECE, MCE, classwise ECE and the reliability diagrams
DEFAULT_N_BOOTSTRAP = 200  # percentile-bootstrap resamples of the 95% intervals and the paired verdicts
