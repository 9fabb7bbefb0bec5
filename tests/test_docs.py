"""Examples people copy: the README's Python blocks and the notebooks run.

An example that no longer runs teaches the wrong thing. The README's Python
blocks run as written, in order, in one fresh process, in an empty folder; each
notebook runs top to bottom with its parameters cell set to a small shop and one
epoch (what a reader runs is the same code, bigger).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 420
NOTEBOOK_PARAMETERS = '''SHOP = {"num_items": 200, "num_users": 60, "num_clicks": 1500}
EPOCHS = 1
RUN = "runs/notebook-shop"
MODEL_DIR = "saved_models/notebook-shop"'''
FEEDBACK_NOTEBOOK_PARAMETERS = '''SHOP = {"num_items": 200, "num_users": 60, "num_clicks": 1500, "shift_share": 0.5}
EPOCHS = 1
WORK = "runs/notebook-feedback"
MODEL_DIR = "saved_models/notebook-feedback"'''


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


@pytest.mark.slow
def test_readme_python_examples_run_as_written(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 2
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks))
    environment = {k: v for k, v in os.environ.items() if k != "MMREC_MODEL_DIR"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=environment, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert (tmp_path / "saved_models" / "mmrec" / "1" / "saved_model.pb").is_file()
    # the quiet logs promise: no C++ noise from TensorFlow in what a reader sees
    assert "cuInit" not in done.stderr and "PredictCost" not in done.stderr


def run_notebook(name: str, parameters: str, folder: Path) -> str:
    """Runs notebooks/``name`` top to bottom in ``folder`` with its parameters
    cell replaced; returns the text of every output."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name} needs one cell tagged 'parameters'"
    cells[0].source = parameters
    client = NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    return "".join(output.get("text", "") for cell in notebook.cells
                   for output in cell.get("outputs", []))


@pytest.mark.slow
def test_quickstart_notebook_runs_top_to_bottom(tmp_path):
    outputs = run_notebook("quickstart.ipynb", NOTEBOOK_PARAMETERS, tmp_path)
    assert "oracle" in outputs and "NDCG@10" in outputs
    assert (tmp_path / "recs.png").is_file()
    assert (tmp_path / "saved_models" / "notebook-shop" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_feedback_notebook_runs_the_loop_top_to_bottom(tmp_path):
    outputs = run_notebook("feedback_loop.ipynb", FEEDBACK_NOTEBOOK_PARAMETERS, tmp_path)
    models = tmp_path / "saved_models" / "notebook-feedback"
    assert (models / "1" / "saved_model.pb").is_file()
    # every click stored once: the retried delivery adds nothing
    assert "received 100 = accepted 0 + duplicates 100 + rejected 0 + pending 0" in outputs
    assert "history from the store:       top 10 at percentile" in outputs
    outcome = re.search(r"^(published|rejected): live version 1, (\d+) new events", outputs, re.M)
    assert outcome and int(outcome.group(2)) > 0, outputs[-3000:]
    assert "validation holdout" in outputs   # the gate's numbers are shown
    assert (models / "2" / "saved_model.pb").is_file() == (outcome.group(1) == "published")
