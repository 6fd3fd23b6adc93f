"""The seed grid (CLIP b16,b32 x norm true,false) as nested MLflow runs: `python experiments/sweep.py --help`.

The same as `clip-aesthetics sweep` and `mlflow run . -e sweep` (which runs that subcommand); flags are
documented there.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # works uninstalled, like MLproject

from clip_aesthetics.environment import require_dependencies  # noqa: E402

if __name__ == "__main__":
    require_dependencies()
    from clip_aesthetics.cli.app import main

    sys.exit(main(["sweep", *sys.argv[1:]]))
