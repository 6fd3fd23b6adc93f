"""The MLflow UI comparison, in a real browser: the demo's store, a real `mlflow server`, headless Chromium.

Runs the demo (experiments/demo.py, what `make demo` runs) into a temporary folder, serves its store on
127.0.0.1, and checks what a person would look for: the sweep parent, its four children by name,
their test_spearman values, and the registered model's champion alias. Screenshots go to build/e2e/.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from servers import free_port, wait_until_serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "build" / "e2e"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]
CHILDREN = ["stand-in-b16-normed", "stand-in-b16-raw", "stand-in-b32-normed", "stand-in-b32-raw"]


def require_browser():
    missing = [what for what, ok in (("Debian's chromium (/usr/bin/chromium)", CHROMIUM.exists()),
                                     ("playwright", _importable("playwright"))) if not ok]
    if missing:
        message = f"browser test needs {' and '.join(missing)}; .ci/run installs them"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    require_browser()
    workdir = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "demo.py"), "--workdir", str(workdir)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "test_spearman per epoch" in done.stdout and "mlflow ui" in done.stdout
    assert "Downloading artifacts" not in done.stdout + done.stderr, "MLflow's per-file progress bars are off"
    return workdir, done.stdout


@pytest.fixture(scope="module")
def server(demo_store):
    workdir, _ = demo_store
    port = free_port()
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/health", process, workdir / "server.log")
        yield f"http://127.0.0.1:{port}", workdir
    finally:  # the server and its workers, whatever happened
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1600, "height": 1000})
        finally:
            browser.close()


def experiment_runs(workdir: Path):
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("clip-aesthetics")
    return experiment.experiment_id, client.search_runs([experiment.experiment_id])


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_the_demos_link_opens_the_runs_in_the_model_training_view(server, page, demo_store):
    base, workdir = server
    experiment_id, _ = experiment_runs(workdir)
    _, output = demo_store
    link = re.search(r"then (http://127\.0\.0\.1:5000/\S+)", output).group(1)
    page.goto(link.replace("http://127.0.0.1:5000", base))
    page.get_by_role("link", name="sweep").wait_for(timeout=60_000)
    assert "/runs" in page.url and "workflowType=machine_learning" in page.url
    body = page.inner_text("body")
    assert "Models" in body and "Judges" not in body and "Evaluation runs" not in body, "not the GenAI view"
    kind = mlflow.MlflowClient().get_experiment(experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"


def test_runs_page_shows_the_sweep_its_four_children_and_their_dataset(server, page):
    base, workdir = server
    experiment_id, runs = experiment_runs(workdir)
    page.goto(f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    page.get_by_role("link", name="sweep").wait_for(timeout=60_000)
    page.get_by_role("row").filter(has=page.get_by_role("link", name="sweep")).first.locator("button").first.click()
    for name in CHILDREN:
        page.get_by_text(name, exact=True).wait_for(timeout=30_000)
    digest = next(r for r in runs if r.info.run_name == CHILDREN[0]).inputs.dataset_inputs[0].dataset.digest
    for name in CHILDREN:  # the Dataset column names the AVA table (and its digest) on every child's row
        index = page.get_by_role("row").filter(has=page.get_by_text(name, exact=True)).first.get_attribute("row-index")
        text = " ".join(part.inner_text() for part in page.locator(f"[role=row][row-index='{index}']").all())
        assert re.search(rf"AVA\.txt#\w+ \({digest}\)", text), text  # the grid splits a row in pinned parts
    screenshot(page, "runs.png")


def test_compare_page_shows_each_childs_test_spearman(server, page):
    base, workdir = server
    experiment_id, runs = experiment_runs(workdir)
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(children) == CHILDREN
    ids = json.dumps([r.info.run_id for r in children.values()])
    page.goto(f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment_id])}")
    page.get_by_text("best_epoch", exact=True).first.wait_for(timeout=60_000)
    for name in CHILDREN:
        page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
    shown = []
    metrics = page.get_by_text("best_epoch", exact=True).first.evaluate_handle(
        "el => el.closest('.du-bois-light-collapse-content')")
    for offset in range(0, 2000, 150):  # the metrics table is a fixed-height virtual grid: scroll it through
        metrics.evaluate(SCROLL_GRID, offset)
        page.wait_for_timeout(300)
        shown += [float(x) for x in re.findall(r"-?\d+\.\d+", page.inner_text("body"))]
    for name, run in children.items():
        value = run.data.metrics["test_spearman"]
        assert any(abs(value - number) < 1e-3 for number in shown), f"{name}'s test_spearman {value} is not shown"
    screenshot(page, "compare.png")


SCROLL_GRID = """(section, offset) => {
    for (const grid of section.querySelectorAll('.ReactVirtualized__Grid')) {
        grid.scrollTop = offset; grid.dispatchEvent(new Event('scroll'));
    }
}"""


def test_champion_version_page_links_to_the_training_run(server, page):
    base, workdir = server
    experiment_runs(workdir)
    champion = mlflow.MlflowClient().get_model_version_by_alias("clip-aesthetics", "champion")
    training = mlflow.MlflowClient().get_run(champion.run_id)
    assert training.info.run_name in CHILDREN
    page.goto(f"{base}/#/models/clip-aesthetics/versions/{champion.version}")
    page.reload()
    link = page.get_by_role("link", name=training.info.run_name)
    link.wait_for(timeout=60_000)
    assert link.get_attribute("href").endswith(f"/runs/{training.info.run_id}"), "Source Run is the training child"
    assert "val_spearman" in page.inner_text("body"), "the version's description"
    screenshot(page, "version.png")


def test_model_page_shows_the_champion(server, page):
    base, workdir = server
    page.goto(f"{base}/#/models/clip-aesthetics")
    page.reload()  # a change of the URL's hash alone does not always re-route the app
    page.wait_for_function("() => document.body.innerText.includes('Registered Models')", timeout=60_000)
    page.wait_for_function("() => /Version 1[\\s\\S]*@\\s*champion/.test(document.body.innerText)", timeout=30_000)
    body = page.inner_text("body")
    assert re.search(r"Version 1[\s\S]*@\s*champion", body), "the champion alias is not shown on version 1"
    assert "Predicts the aesthetic score of an image on the scale of the ratings it was trained on" in body, \
        "the model's description"
    screenshot(page, "model.png")


def test_demo_output_tells_what_happened(demo_store):
    workdir, output = demo_store
    assert "standing in for b16 and b32" in output
    assert all(name in output for name in CHILDREN)
    assert (workdir / "data" / "demo" / "scores.csv").exists()
    assert "total" in output and "truncated" in output


GALLERY_SCREENSHOT = ROOT / "experiments" / "screenshots" / "training-gallery.png"  # shown in the README


def test_the_training_gallery_opens_in_the_artifact_view_with_the_runs_scores(server, page):
    """The champion's gallery/test.html, clicked open in the run's Artifacts tab: every thumbnail decoded, buckets
    in order, each shown score the run's own prediction. Its screenshot is the README's."""
    base, workdir = server
    experiment_id, _ = experiment_runs(workdir)
    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version_by_alias("clip-aesthetics", "champion").run_id)
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run.info.run_id}/artifacts")
    page.reload()
    page.get_by_text("gallery", exact=True).first.click(timeout=60_000)
    page.get_by_text("test.html", exact=True).first.click(timeout=30_000)
    frame_element = page.locator("iframe").first
    frame_element.wait_for(timeout=60_000)
    frame = frame_element.element_handle().content_frame()
    frame.wait_for_selector("figure img", timeout=60_000)
    widths = frame.eval_on_selector_all("figure img", "els => els.map(e => e.naturalWidth)")
    assert widths and min(widths) > 0, "every thumbnail decoded"
    lows = [float(x) for x in frame.eval_on_selector_all(".bucket", "els => els.map(e => e.dataset.low)")]
    assert lows == sorted(lows)
    import pandas as pd

    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions/test.csv", str(workdir)))
    expected = dict(zip(predictions["image_id"].astype(str), predictions["score_pred"], strict=True))
    shown = frame.eval_on_selector_all(".bucket figure", "els => els.map(e => [e.dataset.key, e.dataset.score])")
    assert shown and all(abs(float(score) - expected[key]) < 1e-5 for key, score in shown)
    screenshot(page, "training-gallery-in-ui.png")
    GALLERY_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    frame_element.screenshot(path=str(GALLERY_SCREENSHOT))


def test_the_sweep_and_scoring_galleries_show_what_they_promise(server, page, demo_store):
    """The sweep parent's compare.html: one score per child per image; the demo's scoring gallery: every input
    row, the broken file with its reason; every thumbnail decoded in both."""
    base, workdir = server
    _, runs = experiment_runs(workdir)
    parent = next(r for r in runs if r.data.tags.get("clip_aesthetics.sweep") == "true")
    compare = Path(mlflow.MlflowClient().download_artifacts(parent.info.run_id, "gallery/compare.html", str(workdir)))
    page.goto(compare.as_uri())
    figures = page.locator("figure").count()
    assert figures > 0
    for child in CHILDREN:
        assert page.locator(f'figure [data-child="{child}"]').count() == figures, child
    assert min(page.eval_on_selector_all("figure img", "els => els.map(e => e.naturalWidth)")) > 0
    import pandas as pd

    scores = pd.read_csv(workdir / "data" / "demo" / "scores.csv", keep_default_na=False)
    page.goto((workdir / "data" / "demo" / "scores.html").as_uri())
    body = page.inner_text("body")
    failed = int((scores["error"] != "").sum())
    assert f"{len(scores)} input(s): {len(scores) - failed} scored, {failed} not" in body
    assert "broken.jpg" in body and "truncated" in body
    assert min(page.eval_on_selector_all("figure img", "els => els.map(e => e.naturalWidth)")) > 0
    screenshot(page, "scoring-gallery.png")


HOSTILE = "<img src=x onerror=alert(1)>"  # an image named like markup


def test_thumbnails_decode_in_a_browser_and_nothing_is_requested(sample_ava, tmp_path, page):
    """Headless Chromium (the module's browser): every thumbnail decoded, no dialog, no network request."""
    from clip_aesthetics.scoring.curation_report import gallery_page

    folder = tmp_path / "photos"
    folder.mkdir()
    for image_id in (11, 12, 14):
        shutil.copy(sample_ava / "image" / f"{image_id}.jpg", folder / f"{image_id}.jpg")
    shutil.copy(sample_ava / "image" / "15.jpg", folder / f"{HOSTILE}.jpg")
    frame = pd.DataFrame({"path": [str(p) for p in sorted(folder.iterdir())], "score": [3.0, 4.0, 6.0, 8.0],
                          "error": ["", "", "", ""]})
    (tmp_path / "g.html").write_bytes(gallery_page(frame, (1.0, 10.0)))
    fresh = page.context.browser.new_page()  # the module's browser (one Playwright per process), a page of its own
    requests, dialogs = [], []
    fresh.on("request", lambda r: requests.append(r.url))
    fresh.on("dialog", lambda d: dialogs.append(d.message) or d.dismiss())
    fresh.goto((tmp_path / "g.html").as_uri())
    widths = fresh.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    text = fresh.inner_text("body")
    fresh.close()
    assert widths and min(widths) > 0, widths
    assert not dialogs and HOSTILE in text, "the hostile name shows as text"
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
