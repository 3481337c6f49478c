"""Every notebook runs on a real Jupyter kernel (nbclient + ipykernel, nothing stubbed), with a
small population, and its plots come back as inline PNG outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "cascade-tests"
# each notebook once, from notebooks/ (as `make notebook` opens them) or from the repository
# root
RUNS = [("quickstart.ipynb", NOTEBOOKS),
        ("oct2025.ipynb", ROOT), ("feb2026.ipynb", NOTEBOOKS), ("what-if.ipynb", NOTEBOOKS)]


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec for this interpreter (the venv that runs the tests), found through
    JUPYTER_PATH, so a fresh machine needs no `ipykernel install`."""
    import ipykernel  # noqa: F401  (make test installs the notebooks extra)
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cascade tests", "language": "python"}))
    return {"JUPYTER_PATH": str(base), "JUPYTER_PLATFORM_DIRS": "1",
            "CASCADE_NB_POSITIONS": "4000", "CASCADE_NB_SEEDS": "2",
            "TMPDIR": str(tmp_path_factory.mktemp("nbtmp"))}


def test_every_notebook_is_tested():
    assert {name for name, _ in RUNS} == {p.name for p in NOTEBOOKS.glob("*.ipynb")}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_client/zmq internals
@pytest.mark.parametrize("name,cwd", RUNS, ids=[f"{n}@{c.name}" for n, c in RUNS])
def test_notebook_runs_on_a_real_kernel(name, cwd, kernel_env, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    for k, v in kernel_env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=240, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    pngs = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert pngs, "no plot was shown inline"
    texts = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "max drawdown" in texts  # res.table() printed a summary
