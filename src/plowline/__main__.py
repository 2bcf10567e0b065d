"""``python -m plowline`` runs the command-line interface."""

from plowline.cli import main

main()
