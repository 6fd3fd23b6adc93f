"""`python -m clip_aesthetics` = the `clip-aesthetics` command."""

import sys

from .cli import main

sys.exit(main())
