"""``python -m hma``: the same CLI as the ``hma`` command."""

import sys

from hma.cli import main

sys.exit(main())
