"""`python -m journey` is the `journey` command."""

from journey.cli import main

main()
