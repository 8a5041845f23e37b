"""`python -m segops` runs the command line."""

from segops.cli import main

main()
