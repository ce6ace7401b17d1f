"""Import rules: layers point down, and importing dynlab (or asking the CLI for help) is cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["torch", "numba", "dask", "distributed", "matplotlib", "zarr", "xarray", "h5py", "onnx",
         "scipy", "networkx"]


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_dynlab_is_lazy():
    loaded = _modules_after("import dynlab")
    assert not loaded & set(HEAVY)


def test_cli_help_is_lazy():
    loaded = _modules_after(
        "from dynlab.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert not loaded & set(HEAVY)


def test_layers_point_down():
    """import-linter's contract in pyproject.toml: cli → api → ingestion → store → errors."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports)], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_public_api():
    import dynlab

    assert callable(dynlab.open_store) and callable(dynlab.Recorder)
    assert dynlab.__version__
