"""``python -m analyzer``: the same as the ``oauth-analyzer`` command."""

import sys

from analyzer.cli import main

sys.exit(main())
