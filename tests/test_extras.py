"""Optional packages: a feature whose extra is missing stops with one line naming the extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reloc.analysis.features import earth_movers_distance
from reloc.engine.trainer import MetricsLog
from reloc.errors import EXIT_USAGE, UsageError
from reloc.evidence import parse_methods
from reloc.extras import EXTRAS, require

ROOT = Path(__file__).resolve().parents[1]
CORE_ONLY = """
import sys
for name in sys.argv[1].split(","):  # as if only the core were installed: import NAME fails, find_spec is None
    sys.modules[name] = None
from reloc.cli import app
app(sys.argv[2:], prog_name="reloc")
"""


def test_a_missing_package_is_named_with_the_extra_that_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    monkeypatch.delitem(sys.modules, "sklearn.manifold", raising=False)
    with pytest.raises(
        UsageError, match=r"the figure: needs sklearn, which is not installed: pip install 'reloc\[figures\]'"
    ):
        require("sklearn.manifold", "figures", "the figure")
    assert require("json", "figures", "the figure").loads("[1]") == [1]


def test_the_emd_without_scipy_names_the_figures_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(UsageError, match=r"reloc\[figures\]"):
        earth_movers_distance(np.zeros((2, 2)), np.ones((2, 2)))


def test_training_without_tensorboard_writes_metrics_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    log = MetricsLog(tmp_path, enabled=True, first_epoch=0)
    assert log.writer is None
    assert "pip install 'reloc[tensorboard]'" in capsys.readouterr().err
    log.scalar("loss", 1.0, 0)  # nothing to write to, no error


def _reloc_core_only(arguments: list[str]) -> subprocess.CompletedProcess:
    """``reloc ARGUMENTS`` in a process where no package of an extra can be imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", CORE_ONLY, ",".join(EXTRAS), *map(str, arguments)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_localize_runs_on_the_core_install(tmp_path):
    """``pip install .`` without extras then ``reloc localize x.png`` works (SciPy was imported by
    the copy-move matcher at module level, so localize failed without the figures extra)."""
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(image)
    done = _reloc_core_only(["localize", image, "--out", tmp_path / "out", "--device", "cpu"])
    assert done.returncode == 0, done.stdout + done.stderr
    facts = json.loads((tmp_path / "out" / "x.json").read_text())["map"]  # the default fusion falls back, saying why
    assert facts["fusion"] == "clones+dq" and facts["shows"].startswith("the learned map (")
    assert "the copy-move matcher does not apply" in facts["shows"]
    assert "the double-quantisation model does not apply" in facts["shows"]  # a PNG
    assert "pip install 'reloc[figures]'" in facts["shows"]
    done = _reloc_core_only(["localize", image, "--out", tmp_path / "out2", "--evidence", "ela,clones"])
    assert done.returncode == EXIT_USAGE
    assert done.stderr.splitlines()[0] == (
        "error: --evidence: clones needs scipy, which is not installed: pip install 'reloc[figures]'"
    )


def test_evidence_methods_name_the_extra_they_need(monkeypatch):
    assert parse_methods("ela,clones") == ["ela", "clones"]
    monkeypatch.setitem(sys.modules, "scipy", None)
    assert parse_methods("ela,noise") == ["ela", "noise"]
    with pytest.raises(ValueError, match=r"clones needs scipy, which is not installed: pip install 'reloc\[figures\]'"):
        parse_methods("ela,clones")
