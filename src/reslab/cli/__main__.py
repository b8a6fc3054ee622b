"""``python -m reslab.cli``: the same as the ``reslab`` command (torchrun starts it this way)."""

import sys

from reslab.cli import main

sys.exit(main())
