"""`python -m flowrunner._cli` is `flowrun`."""

import sys

from flowrunner._cli import main

sys.exit(main())
