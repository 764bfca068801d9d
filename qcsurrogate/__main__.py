"""`python -m qcsurrogate ...` (what `torchrun -m qcsurrogate` runs)."""

import sys

from .cli import main

sys.exit(main())
