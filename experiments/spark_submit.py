"""The `clip-aesthetics` CLI as a script file, for `spark-submit` (which runs a file, not a module).

    spark-submit --master yarn experiments/spark_submit.py score --engine spark hdfs:///photos --out hdfs:///scores.parquet

Under spark-submit the session it configured is used as it is (see clip_aesthetics/engines/spark.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # works uninstalled, like MLproject

from clip_aesthetics.environment import require_dependencies  # noqa: E402

if __name__ == "__main__":
    require_dependencies()
    from clip_aesthetics.cli.app import main

    sys.exit(main(sys.argv[1:]))
