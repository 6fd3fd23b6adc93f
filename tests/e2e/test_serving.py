"""`mlflow models serve` of the registered champion and of its ONNX export: base64 images in, scores out, paths
refused."""


import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from servers import free_port, wait_until_serving

import clip_aesthetics

NAME = "clip-aesthetics"


def strict_json(text: str):
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are not JSON."""
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def post(url: str, payload: dict):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, strict_json(response.read().decode())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(params=["champion", "onnx"])
def served_uri(request, store) -> str:
    if request.param == "champion":
        return f"models:/{NAME}@champion"
    pytest.importorskip("onnxruntime") if not os.environ.get("CI") else None
    from clip_aesthetics.cli import app as cli

    if cli.main(["export", "--model", f"models:/{NAME}@champion", "--model-name", "served-onnx"]) != 0:
        pytest.fail("export of the champion failed")
    return "models:/served-onnx@float32"


@pytest.mark.slow
def test_served_model_answers_base64_images_and_refuses_paths(store, served_uri, tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": store["uri"]}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", served_uri,
                               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                              env=env, cwd=store["root"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/ping", server, tmp_path / "serve.log")
        image = base64.b64encode((store["ava"] / "image" / "14.jpg").read_bytes()).decode()
        status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [
            {"image": image}, {"image": base64.b64encode(b"junk").decode()}, {"image": None}, {"image": 7}]})
        assert status == 200, body
        first, *bad = body["predictions"]
        assert 1 <= first["score"] <= 10 and first["error"] == "" and 0 <= first["percentile"] <= 100
        local = clip_aesthetics.load(served_uri, tracking_uri=store["uri"]).score([store["ava"] / "image" / "14.jpg"])
        assert first["percentile"] == pytest.approx(local["percentile"].iat[0], abs=1e-9), "as in one process"
        assert all(row["score"] is None and row["percentile"] is None for row in bad), "null, not NaN"
        assert "not an image" in bad[0]["error"] and "no image in this row" in bad[1]["error"]
        assert "got int" in bad[2]["error"]
        for records, words in (([{"path": str(store["ava"] / "image" / "14.jpg")}], "not `path`"),
                               ([], "no rows"), ([{"picture": image}], "no rows with an `image` column")):
            status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": records})
            assert status == 400 and words in json.loads(body)["message"], body[:500]
        log.flush()
        logged = (tmp_path / "serve.log").read_text()
        assert "the served model scores in float32" in logged, "its log names the precision"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
