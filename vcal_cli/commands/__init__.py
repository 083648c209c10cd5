"""The command functions, one module each: audit (and export_features), retrain, gate (and compare), frontier.
`vcal_cli.api` re-exports them; the CLI calls them."""
