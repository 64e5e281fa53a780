"""The package's layers hold: import-linter's contracts (pyproject.toml) are kept, and break when
a module reaches across them. Function-level imports count too."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tickerlake.core.settings import REPO_ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint() -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_every_import_contract_is_kept():
    done = _lint()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "imports", "contract"), [
    ("tickerlake/core/_probe.py", "from tickerlake.warehouse import base", "The core imports nothing else"),
    ("tickerlake/streaming/_probe.py", "import ingestion.producer", "Controllers and lanes import no worker"),
    ("tickerlake/warehouse/_probe.py", "def f():\n    import tickerlake.dev.demo", "never imports the local"),
    ("spark_jobs/_probe.py", "import airflow.sdk", "Spark jobs never import Airflow"),
    ("ingestion/_probe.py", "import dags.lake_smoke", "Nothing imports a DAG file"),
])
def test_a_module_reaching_across_a_layer_breaks_its_contract(module, imports, contract):
    probe = REPO_ROOT / module
    probe.write_text(imports + "\n")
    try:
        done = _lint()
    finally:
        probe.unlink()
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), done.stdout[-2000:]


def test_the_package_map_in_the_docs_matches_the_tree():
    """docs/architecture.md lists every module once, and nothing that is not there."""
    import re

    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", section, re.MULTILINE))
    modules = {str(p.relative_to(REPO_ROOT)) for root in ("tickerlake", "ingestion", "spark_jobs", "minio_init")
               for p in (REPO_ROOT / root).rglob("*.py")
               if p.name != "__init__.py" or p.parent.name == "warehouse"}
    assert listed == modules, {"not listed": sorted(modules - listed), "not in the tree": sorted(listed - modules)}
