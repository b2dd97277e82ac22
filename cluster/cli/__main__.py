"""`python -m cluster.cli ...`: the same as the `painsearch` command."""

from cluster.cli.main import program

program()
