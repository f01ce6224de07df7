"""The learning-rate range test: exponential sweep, early stop on explosion, suggestion, files."""
from __future__ import annotations

import csv
import math

import pytest

from cifar_tricks import jobs
from cifar_tricks.optim.lr_finder import _suggest
from conftest import TINY, compose_config


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (-6 + 7 * i / 99) for i in range(100)]
    # flat, then a drop centred at lr 1e-2, then a blow-up
    loss = [2.0 - math.tanh((math.log10(lr) + 2) * 2) + (5 if lr > 0.3 else 0) for lr in lrs]
    assert _suggest(lrs, loss) == pytest.approx(1e-2, rel=0.5)


@pytest.mark.parametrize("end_lr, stops", [(1.0, False), (1e6, True)])
def test_lr_find_mode_writes_the_sweep_and_a_finite_suggestion(tmp_path, end_lr, stops):
    overrides = TINY + ["mode=lr_find", "model=resnet20", "lr_find.num_iter=30",
                        f"lr_find.end_lr={end_lr}"]
    suggestion = jobs.lr_find(compose_config(overrides),
                              jobs.Job(tmp_path, overrides, {"model": "resnet20"}))
    assert math.isfinite(suggestion) and 1e-7 <= suggestion <= end_lr
    rows = list(csv.DictReader(open(tmp_path / "lr_find.csv")))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(1e-7)
    ratios = {round(b / a, 6) for a, b in zip(lrs, lrs[1:])}
    assert len(ratios) == 1  # exponential sweep: a constant ratio per step
    assert (len(rows) < 30) == stops  # an exploding loss ends the sweep early
    assert (tmp_path / "lr_find.png").stat().st_size > 0


def test_unknown_mode_is_refused_with_the_list_of_modes(tmp_path):
    from conftest import run_cli

    proc = run_cli("mode=lr_fnd", "experiment=smoke", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "mode=lr_fnd is not a mode; choose one of ['eval', 'lr_find', 'train']" in proc.stderr
