"""`python -m apls`: the `apls` command (apls.cli)."""

import sys

from .cli import main

sys.exit(main())
