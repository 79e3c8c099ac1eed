"""`python -m newsletter` runs the command line."""

from newsletter.cli import main

main()
