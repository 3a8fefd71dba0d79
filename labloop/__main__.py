"""``python -m labloop``: the command line."""

from labloop.cli import main

main()
