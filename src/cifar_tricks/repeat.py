"""One recipe trained several times, after a warm-up run that is not counted: the mean and the
spread of its accuracy and time, which is what a speed claim rests on (airbench reports means
over hundreds of runs). Each run is a real job (`jobs.train`, as `python run.py` trains it) in a
folder of its own, seeds 0..n-1; the warm-up run (seed 1000) pays for first-use costs (kernel
selection, allocator growth, compilation caches) that a timed run must not include."""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .config import compose
from .jobs import Job, train

__all__ = ["repeat_runs"]

WARMUP_SEED = 1000


def _spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def repeat_runs(overrides: Sequence[str], runs: int, out: Path | None = None,
                warmup: bool = True, warmup_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train `overrides` `runs` times (seeds 0..runs-1) after a warm-up run; returns the
    per-run numbers and their mean and sample std. Folders go to `out` (a temporary folder
    when None). `warmup_overrides` apply to the warm-up run only (`trainer.epochs=1` shortens
    it where one epoch already pays every first-use cost, as on a CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out) if out is not None else Path(tmp)
        seeds = ([WARMUP_SEED] if warmup else []) + list(range(runs))
        summaries = []
        for seed in seeds:
            extra = list(warmup_overrides) if seed == WARMUP_SEED else []
            job_overrides = [*overrides, *extra, f"seed={seed}", "trainer.progress=log"]
            folder = root / f"seed={seed}"
            train(compose(job_overrides), Job(folder, job_overrides))
            summaries.append(json.loads((folder / "summary.json").read_text()))
    counted = summaries[1:] if warmup else summaries
    result: dict[str, Any] = {"overrides": list(overrides), "runs": len(counted)}
    for key in ("test_acc", "tta_test_acc", "train_time_s", "compile_time_s"):
        values = [s[key] for s in counted if s.get(key) is not None]
        if values:
            result[f"{key}_mean"], result[f"{key}_std"] = _spread(values)
            result[key] = values
    return result
