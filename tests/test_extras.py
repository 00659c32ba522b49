"""Optional packages: a feature whose extra is missing stops with one line naming the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from reloc.analysis.features import earth_movers_distance
from reloc.engine.trainer import MetricsLog
from reloc.errors import UsageError
from reloc.extras import require


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
