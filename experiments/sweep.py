"""The seed grid (CLIP b16,b32 x norm true,false) as nested MLflow runs: `python experiments/sweep.py --help`.

The same as `clip-aesthetics sweep` and `mlflow run . -e sweep`; flags are documented there.
"""

import sys

from clip_aesthetics.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
