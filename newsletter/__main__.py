"""`python -m newsletter` runs the command line."""

from newsletter.cli.main import main

main()
