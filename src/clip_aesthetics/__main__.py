"""`python -m clip_aesthetics` = the `clip-aesthetics` command (as the MLproject entry points run it)."""

import sys

from clip_aesthetics.environment import require_dependencies

require_dependencies()  # before anything imports pandas or torch: one clear line instead of a traceback

from clip_aesthetics.cli.app import main  # noqa: E402

sys.exit(main())
