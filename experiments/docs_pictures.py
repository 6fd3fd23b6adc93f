"""The manual's pictures, made from a demo run by the current code (never pasted): `make docs-pictures`.

Runs the demo (what `make demo` runs) into a temporary folder, serves its store with `mlflow server` on
127.0.0.1, and takes with headless Chromium (Debian's `chromium`, driven by Playwright from the test extras):

- runs.png: the MLflow UI's runs table with the sweep parent opened on its four children;
- compare-runs.png: the MLflow UI's comparison of the children;
- training-gallery.png, sweep-compare.png, scoring-gallery.png: the training run's test gallery, the sweep's
  per-image comparison, the scoring gallery of `clip-aesthetics score`;
- calibration.png, residuals.png: the champion's training run's plots, as logged.

into docs/pictures/ (the pages show them). Offline; about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "pictures"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 860}


def run_demo(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["HF_HUB_OFFLINE"] = "1"
    subprocess.run([sys.executable, str(ROOT / "experiments" / "demo.py"), "--workdir", str(workdir)], env=env,
                   check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                f"sqlite:///{workdir / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "1"], cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit("mlflow server exited before it served")
            time.sleep(1)
    raise SystemExit("mlflow server did not answer within two minutes")


def take(workdir: Path, url: str) -> list[Path]:
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    import mlflow
    from playwright.sync_api import sync_playwright

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("clip_aesthetics.sweep") == "true")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    champion = client.get_model_version_by_alias("clip-aesthetics", "champion")
    downloads = workdir / "downloads"
    written = []
    for name in ("calibration.png", "residuals.png"):
        local = client.download_artifacts(champion.run_id, f"plots/{name}", str(downloads))
        written.append(Path(shutil.copy(local, OUT / name)))
    pages = {
        "training-gallery.png": Path(client.download_artifacts(champion.run_id, "gallery/test.html", str(downloads))),
        "sweep-compare.png": Path(client.download_artifacts(parent.info.run_id, "gallery/compare.html",
                                                            str(downloads))),
        "scoring-gallery.png": workdir / "data" / "demo" / "scores.html",
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        for name, html in pages.items():
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(OUT / name))
            written.append(OUT / name)
        page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning")
        page.get_by_role("link", name="sweep").wait_for(timeout=60_000)
        page.get_by_role("row").filter(has=page.get_by_role("link", name="sweep")).first.locator("button").first.click()
        page.get_by_text(children[0].info.run_name, exact=True).wait_for(timeout=30_000)
        close_side_panels(page)
        page.screenshot(path=str(OUT / "runs.png"))
        written.append(OUT / "runs.png")
        ids = json.dumps([r.info.run_id for r in children])
        page.goto(f"{url}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment.experiment_id])}")
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        close_side_panels(page)
        page.wait_for_timeout(2000)  # the plot's transition
        page.screenshot(path=str(OUT / "compare-runs.png"))
        written.append(OUT / "compare-runs.png")
        browser.close()
    return written


def close_side_panels(page) -> None:
    """The UI's assistant panel opens beside the runs on a first visit: closed, so the picture shows the runs."""
    panel = page.get_by_text("MLflow Assistant")
    if panel.count():
        button = page.locator("button[aria-label='Close'], button[aria-label='close']")
        if button.count():
            button.last.click()
            page.wait_for_timeout(500)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="a folder where the demo already ran (default: run it anew)")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit("needs Debian's chromium (/usr/bin/chromium): sudo apt-get install chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="docs-pictures-") as scratch:
        workdir = args.workdir or Path(scratch)
        if args.workdir is None:
            print("running the demo ...", flush=True)
            run_demo(workdir)
        process, url = serve(workdir)
        try:
            for path in take(workdir, url):
                print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
