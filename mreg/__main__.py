"""``python -m mreg`` runs the command line."""

from .cli import main

main()
