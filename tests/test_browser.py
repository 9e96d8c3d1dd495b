"""The README's two UIs, rendered in headless Chromium: the Kedro-Viz graph and the MLflow run page.

Each test serves the UI on 127.0.0.1 from a scratch copy of the project, loads it in Debian's
Chromium, checks the rendered DOM (not just the served JSON) and takes a screenshot; with
UPDATE_SCREENSHOTS=1 it refreshes `docs/screenshots/`. `.ci/run` installs Chromium when
`/usr/bin/chromium` is missing.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
DOC_SCREENSHOTS = PROJECT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags Chromium keeps dialling Google hosts this closed network refuses.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
)
# Virtual time lets the single-page apps fetch and lay out; a slow machine gets longer budgets.
VIRTUAL_TIME_BUDGETS_MS = (10_000, 20_000, 40_000)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium: "
        "`apt-get update && apt-get install -y chromium` (.ci/run does this)",
    ),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's pyproject and conf in a scratch folder, so data/ and mlflow.db stay apart."""
    root = tmp_path_factory.mktemp("browser_project")
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package itself comes from the installed project
    return root


def kedro(project: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"kedro {' '.join(args)} failed:\n" + (
        result.stdout[-3000:] + result.stderr[-3000:]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(args: list[str], cwd: Path, log: Path, ready_url: str, env: dict | None = None):
    """Start a server in its own process group and wait (bounded) until `ready_url` answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{args[0]} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(ready_url, timeout=5):
                return proc
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                stop(proc)
                raise AssertionError(
                    f"{ready_url} did not answer in 120 s:\n{log.read_text()}"
                ) from None
            time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and its workers (its own process group only)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def chromium(url: str, tmp_path: Path, *args: str, budget_ms: int) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"  # a fresh profile every load
    return subprocess.run(
        [
            str(CHROMIUM),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def rendered_dom(url: str, tmp_path: Path, window: str, rendered) -> str:
    """The DOM after the app renders: retried with longer virtual-time budgets until `rendered`."""
    dom = ""
    for budget_ms in VIRTUAL_TIME_BUDGETS_MS:
        result = chromium(
            url, tmp_path, f"--window-size={window}", "--dump-dom", budget_ms=budget_ms
        )
        dom = result.stdout
        if rendered(dom):
            return dom
    return dom


def screenshot(url: str, tmp_path: Path, window: str, name: str) -> Path:
    """A screenshot (to docs/screenshots with UPDATE_SCREENSHOTS=1), checked not to be blank."""
    folder = DOC_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / name
    result = chromium(
        url,
        tmp_path,
        f"--window-size={window}",
        f"--screenshot={png}",
        budget_ms=VIRTUAL_TIME_BUDGETS_MS[1],
    )
    assert png.exists(), f"chromium wrote no screenshot of {url}:\n{result.stderr[-2000:]}"
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20, f"{png} is (nearly) uniform: {len(colours)}"
    return png


# --- Kedro-Viz -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def viz_url(project, tmp_path_factory) -> Iterator[str]:
    """`kedro viz build`'s static site served on 127.0.0.1, opened on the default pipeline."""
    kedro(project, "viz", "build")
    site = project / "build"
    # Kedro-Viz opens a feature tour over the graph on first visit; this page, on the same origin,
    # records the tour as seen in localStorage, then opens the default pipeline.
    (site / "no_tour.html").write_text(
        "<!doctype html><script>"
        'localStorage.setItem("KedroViz", JSON.stringify({showFeatureHints: false}));'
        'location.replace("/?pipeline_id=__default__");'
        "</script>\n"
    )
    port = free_port()
    proc = serve(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=site,
        log=tmp_path_factory.mktemp("viz_log") / "http.log",
        ready_url=f"http://127.0.0.1:{port}/api/main",
    )
    try:
        yield f"http://127.0.0.1:{port}/no_tour.html"
    finally:
        stop(proc)


GRAPH_NODE = re.compile(
    r'<g[^>]*class="pipeline-node[^"]*"[^>]*data-id="([^"]+)"[^>]*data-node-fullname="([^"]+)"'
)


def test_kedro_viz_renders_the_default_pipeline_graph(project, viz_url, tmp_path):
    graph = json.loads((project / "build" / "api" / "main").read_text())
    expected = {  # id -> name of every node and dataset in the default pipeline
        node["id"]: node["name"]
        for node in graph["nodes"]
        if "__default__" in node["pipelines"] and node["type"] in ("task", "data")
    }
    assert {"train_policy_node", "policy_checkpoint", "episodes"} <= set(expected.values())

    def drawn(dom: str) -> dict[str, str]:
        return dict(GRAPH_NODE.findall(dom))

    dom = rendered_dom(
        viz_url, tmp_path, "1400,900", lambda dom: expected.keys() <= drawn(dom).keys()
    )
    missing = sorted(name for id_, name in expected.items() if id_ not in drawn(dom))
    assert not missing, f"default pipeline nodes not drawn in the graph SVG: {missing}"
    assert {"train_policy_node", "policy_checkpoint"} <= set(drawn(dom).values())
    assert "Workflow run status" not in dom  # the tour does not cover the graph
    screenshot(viz_url, tmp_path, "1400,900", "kedro_viz.png")


# --- MLflow UI -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_ui(project, tmp_path_factory) -> Iterator[tuple[str, object]]:
    """A smoke run tracked in the scratch mlflow.db, and `mlflow server` on it at 127.0.0.1."""
    import mlflow

    kedro(project, "run", "--env=smoke")
    tracking_uri = f"sqlite:///{project / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiment_ids=experiments)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED", [r.info for r in runs]

    port = free_port()
    proc = serve(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            tracking_uri,
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=project,
        log=tmp_path_factory.mktemp("mlflow_log") / "mlflow.log",
        ready_url=f"http://127.0.0.1:{port}/health",
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    try:
        yield f"http://127.0.0.1:{port}", runs[0]
    finally:
        stop(proc)


def js_number(value: float) -> str:
    """How the MLflow UI (JavaScript) prints a metric value."""
    return str(int(value)) if value.is_integer() else repr(value)


def test_mlflow_ui_shows_the_smoke_run_with_its_metrics(mlflow_ui, tmp_path):
    base, run = mlflow_ui
    loss = run.data.metrics["train/loss"]
    # The run's overview tab in the model-training view: details, tags and the metrics table.
    url = (
        f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        "?workflowType=machine_learning"
    )
    metric_link = re.compile(r">train/loss</a>")

    dom = rendered_dom(url, tmp_path, "1400,1500", lambda dom: bool(metric_link.search(dom)))
    assert metric_link.search(dom), "train/loss is not in the run page's metrics table"
    assert f'data-testid="runs-header">{run.info.run_name}<' in dom
    assert run.info.run_id in dom
    assert js_number(loss) in dom, f"train/loss = {js_number(loss)} is not shown"
    assert ">eval.aloha_sim_transfer_cube/success_rate</a>" in dom
    screenshot(url, tmp_path, "1400,1500", "mlflow_ui.png")
