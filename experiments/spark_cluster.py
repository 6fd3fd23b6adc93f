"""A Spark standalone cluster on this machine: a master and N workers on 127.0.0.1, from the pyspark package.

    python experiments/spark_cluster.py start --workers 2 --cores 1 --dir /tmp/spark-cluster   # prints the master URL
    spark-submit --master spark://127.0.0.1:PORT experiments/spark_submit.py score --engine spark ...
    python experiments/spark_cluster.py stop --dir /tmp/spark-cluster

For trying the cluster path (the model shipped as an archive, executors in their own processes and work folders)
without a cluster; the tests run `spark-submit` against one. Spark's own launcher classes are used (the pip
package has no sbin/start-master.sh): `spark-class org.apache.spark.deploy.master.Master` and `...worker.Worker`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def spark_home() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(folder: Path, name: str, args: list[str]) -> int:
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}
    log = open(folder / f"{name}.log", "wb")  # noqa: SIM115  the daemon writes it after we return
    process = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    (folder / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def _wait_for(log: Path, text: str, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"Spark did not log {text!r} within {seconds:.0f}s ({log}):\n{tail}")


def start(folder: Path, workers: int = 2, cores: int = 1, memory: str = "2g", timeout: float = 120) -> str:
    """Start the master and the workers; returns the master URL once every worker has registered."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    _launch(folder, "master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                               "--webui-port", str(free_port())])
    _wait_for(folder / "master.log", "I have been elected leader", timeout)
    for number in range(1, workers + 1):
        work = folder / f"worker-{number}"
        work.mkdir(exist_ok=True)
        _launch(folder, f"worker-{number}", ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                                             "--cores", str(cores), "--memory", memory, "--work-dir", str(work),
                                             "--webui-port", str(free_port())])
    for number in range(1, workers + 1):
        _wait_for(folder / f"worker-{number}.log", "Successfully registered with master", timeout)
    (folder / "master-url").write_text(url)
    return url


def stop(folder: Path) -> None:
    """Stop every daemon started in `folder` (workers first), waiting for each to exit."""
    folder = Path(folder)
    for pid_file in sorted(folder.glob("*.pid"), key=lambda p: p.name == "master.pid"):
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink()
            continue
        deadline = time.time() + 20
        while time.time() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()


def _alive(pid: int) -> bool:
    try:  # our own child (started by start() in this process): reap it, or it lingers as a zombie
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, default=Path("data/spark-cluster"), help="logs, pids, work folders")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="per worker")
    parser.add_argument("--memory", default="2g", help="per worker")
    args = parser.parse_args()
    if args.action == "start":
        print(start(args.dir, args.workers, args.cores, args.memory))
    else:
        stop(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
