"""Defaults the commands share (torch-free, so the CLI's help shows them without loading torch)."""

DEFAULT_REPORT_DIR = "vcal-report"  # --out of audit and retrain: the report folder (retrain's checkpoints too)
DEFAULT_N_BINS = 15  # equal-width bins of ECE, MCE, classwise ECE and the reliability diagrams
DEFAULT_N_BOOTSTRAP = 200  # percentile-bootstrap resamples of the 95% intervals and the paired verdicts
DEFAULT_TRAIN_VIEWS = 0  # retrain: augmented views of train for the heads fitted on train (0: the clean features)
# `--head auto`'s time budget in seconds: never binding on small problems; on 1.28M x 2048 x 1,000 it cuts the
# trained candidates short (benchmarks/bench_scale.py --images)
DEFAULT_AUTO_BUDGET = 1800.0
DEFAULT_AUGMENT = "crop"  # their augmentation (vcal_cli.data.augment.AUGMENTS): label-safe for digits and text too
# the split-conformal scores (vcal_cli.metrics.conformal), every one by default
CONFORMAL_SCORES = ("lac", "aps", "aps-rand", "raps", "raps-rand", "lac-class")
DEFAULT_ADV_LIMIT = 1000  # --adversarial attacks the first N test images
DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)  # --shift's corruption severities
DEFAULT_RISK_DELTA = 0.05  # --target-risk's failure probability
MAX_BINS = 1000  # --bins above this says nothing more (and a huge value would only burn time): refused at once
MAX_BOOTSTRAP = 100_000  # --bootstrap resamples at most (the (R, N) resample counts must fit in memory)
MAX_SEED = 2**31 - 1  # seeds are combined with counters (seed * 1_000_003 + block) inside torch's 64-bit range
