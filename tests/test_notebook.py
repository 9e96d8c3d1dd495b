"""notebooks/explore_run.ipynb runs on two `kedro run --env=smoke` outputs in a scratch copy."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT / "notebooks" / "explore_run.ipynb"


def scratch_project(root: Path) -> Path:
    """pyproject + conf in a scratch folder, as tests/test_run.py builds it."""
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package itself comes from the installed project
    return root


def inject_parameters(nb: nbformat.NotebookNode, **values: str) -> None:
    """Add an injected-parameters cell after the tagged one, as papermill does."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)


def test_notebook_first_cell_holds_its_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = nb.cells[0]
    assert "parameters" in first.metadata.get("tags", [])
    assert 'PROJECT_PATH = ""' in first.source and 'ENV = "smoke"' in first.source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored clean


@pytest.mark.slow
def test_notebook_runs_on_two_smoke_runs(tmp_path):
    project = scratch_project(tmp_path)
    for _ in range(2):  # two MLflow runs to compare
        result = subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--env=smoke"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    nb = nbformat.read(NOTEBOOK, as_version=4)
    inject_parameters(nb, PROJECT_PATH=str(project), ENV="smoke")
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(project)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    figures = [
        o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(figures) == 4  # region masks, action batch, drifting field, MLflow curves
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        for o in c.get("outputs", [])
    )
    assert "metrics.eval.aloha_sim_transfer_cube/success_rate" in text  # the runs' table
