"""``python -m streamrt``: the same as the ``streamrt`` command."""

import sys

from .cli import main

sys.exit(main())
