"""``python -m client.loadtest``: the same as ``parley loadtest``."""

import sys

from client.loadtest.cli import main

sys.exit(main())
