"""`python -m clip_aesthetics` = the `clip-aesthetics` command (as the MLproject entry points run it)."""

import sys

from .environment import require_dependencies

require_dependencies()  # before anything imports pandas or torch: one clear line instead of a traceback

from .cli import main  # noqa: E402

sys.exit(main())
