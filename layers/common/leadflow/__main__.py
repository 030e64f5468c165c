"""`python -m leadflow`: the command line (leadflow.cli)."""

import sys

from leadflow.cli import main

sys.exit(main())
