"""``python -m ponder_router`` runs the router, as ``ponder-router`` does."""

import sys

from ponder_router.main import main

sys.exit(main())
