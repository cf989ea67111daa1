"""`python -m cli` is the `journey` command."""

from cli.main import main

main()
