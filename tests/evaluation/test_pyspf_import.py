"""Importing pyspf through spfpolicy puts no SyntaxWarning on stderr, and hides no other warning.

Each test starts a fresh interpreter with -B (no .pyc written) and a copy of the installed spf.py
in a directory of its own, so that spf.py is compiled from source as on a read-only install; on
Python 3.12 and later that compile is what warns about pyspf 2.0.14's invalid escape.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.daemon

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _python(path: Path, code: str) -> subprocess.CompletedProcess[str]:
    spec = importlib.util.find_spec("spf")
    assert spec is not None
    assert spec.origin is not None
    shutil.copy(spec.origin, path / "spf.py")
    return subprocess.run(
        [sys.executable, "-B", "-W", "always", "-c", code],
        env={"PYTHONPATH": f"{path}:{PROJECT_DIR}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_evaluator_compiles_pyspf_without_a_warning(tmp_path: Path) -> None:
    done = _python(tmp_path, "import spfpolicy.evaluation.query, spf; print(spf.__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "spf.py")  # the fresh copy was compiled
    assert done.stderr == ""


def test_an_invalid_escape_elsewhere_still_warns(tmp_path: Path) -> None:
    (tmp_path / "other.py").write_text('PATTERN = "\\d+"\n')
    done = _python(tmp_path, "import spfpolicy.evaluation.query, other")
    assert done.returncode == 0, done.stderr
    # DeprecationWarning on Python 3.11, SyntaxWarning from 3.12: either way, about other.py.
    assert "other.py" in done.stderr
    assert "invalid escape sequence" in done.stderr
    assert "spf.py" not in done.stderr
