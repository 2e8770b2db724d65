"""`python -m icpt COMMAND ...`: the `icpt` command line without its console script."""

import sys

from icpt.commands.cli import main

sys.exit(main())
