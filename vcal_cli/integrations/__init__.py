"""Where users keep their runs: a Lightning callback (`vcal_cli.integrations.lightning`). Each module imports its
library when imported itself, so `import vcal_cli` never needs them."""
