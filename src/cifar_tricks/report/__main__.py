"""`python -m cifar_tricks.report SWEEP_DIR`: see the package docstring."""
from __future__ import annotations

import sys

from . import main

sys.exit(main())
