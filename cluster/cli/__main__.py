"""`python -m cluster.cli ...`: the same as the `painsearch` command."""

import sys

from cluster.cli.main import main

sys.exit(main())
