from vcal_cli.cli import main

main()
