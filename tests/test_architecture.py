"""The layers contract (pyproject.toml [tool.importlinter]): stages -> students -> engines ->
prompts, schema, config, with no import pointing up, imports inside functions included."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_layers_point_down():
    lint = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
            "sys.argv = ['lint-imports']; lint_imports_command()"]
    r = subprocess.run(lint, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_every_student_kind_and_backend_is_registered_once():
    from labeler.config import STUDENT_KINDS
    from labeler.engines import BACKENDS
    from labeler.students import KINDS

    assert set(KINDS) == set(STUDENT_KINDS)
    markers = [b.export_marker for b in BACKENDS.values() if b.export_marker]
    assert len(markers) == len(set(markers))
