"""``python -m ponder_operator`` runs the operator, as ``ponder-operator`` does."""

import sys

from ponder_operator.main import main

sys.exit(main())
