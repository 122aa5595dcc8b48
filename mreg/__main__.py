"""``python -m mreg`` runs the command line."""

from mreg.cli.app import main

main()
