"""Run the command line: python -m spfpolicy."""

import sys

from spfpolicy.cli import main

sys.exit(main())
