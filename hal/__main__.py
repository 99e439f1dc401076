"""Entry point of ``python -m hal``."""

import sys

from hal.tools.cli import main

sys.exit(main())
