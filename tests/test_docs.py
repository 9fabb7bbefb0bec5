"""Examples people copy: the README's Python blocks and the quickstart notebook run.

An example that no longer runs teaches the wrong thing. The README's Python
blocks run as written, in order, in one fresh process, in an empty folder; the
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


@pytest.mark.slow
def test_quickstart_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1, "the notebook needs one cell tagged 'parameters'"
    parameters[0].source = NOTEBOOK_PARAMETERS
    client = NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(output.get("text", "") for cell in notebook.cells
                      for output in cell.get("outputs", []))
    assert "oracle" in outputs and "NDCG@10" in outputs
    assert (tmp_path / "recs.png").is_file()
    assert (tmp_path / "saved_models" / "notebook-shop" / "1" / "saved_model.pb").is_file()
