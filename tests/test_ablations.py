"""The stored sweeps (conf/ablation/*.yaml, one per seed README table), the divide-and-co-train
experiment and the WRN/Shake Optuna search: every row composes, each grid has the table's row
count, and one ablation runs end to end, shrunk, through the real CLI. No real training."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from cifar_tricks.validate import validate
from conftest import CONF, compose_config, run_cli

# Rows of each seed README table (see the comment at the top of each ablation file).
ROWS = {
    "wrn_aug": 4,             # §3.1/3.2 WRN-28-10: baseline, +RICAP, +Random Erasing, +Mixup
    "half_data_models": 30,   # §3.3: all 30 CNN rows (lenet ... ge_resnext29_8x64d)
    "shake_cutout_mixup": 4,  # §3.5
    "shake_tricks": 5,        # §3.6: a baseline (ours), SAM, ASAM, cosine, label smoothing
    "shake_cosine_300": 4,    # §3.7
    "shake_cifarzoo_1800": 4,  # §3.7's quoted CIFAR-ZOO recipe, 1800 epochs
    "shake_aug_combos": 11,   # §3.9
    "spp_study": 15,          # §3.10
    "transformers": 10,       # §1.0
    "divide_co_train": 3,     # §3.8 recipe x 3 seeds
    "toynet_utilisation": 12,  # §3.4: ToyNet depth 2/4/8/16 x batch 32/128/512
}


def ablation_names() -> list[str]:
    return sorted(p.stem for p in (CONF / "ablation").glob("*.yaml"))


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def jobs_of(name: str) -> list[list[str]]:
    """The override lists Hydra's basic sweeper launches for `python run.py ablation=<name>`."""
    cfg = compose_with_hydra([f"ablation={name}"])
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweep.dir == f"multirun/ablation/{name}"
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    parsed = OverridesParser.create().parse_overrides(params)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def test_every_ablation_has_an_expected_row_count():
    assert set(ablation_names()) == set(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_ablation_grid_has_the_seed_tables_rows_and_every_row_composes(name):
    jobs = jobs_of(name)
    assert len(jobs) == ROWS[name], jobs
    assert len({tuple(sorted(j)) for j in jobs}) == len(jobs)  # distinct rows, distinct folders
    for job in jobs:
        cfg = compose_config([f"ablation={name}", *job])
        assert cfg.trainer.epochs in (30, 200, 300, 1800)
        validate(cfg)  # every setting of every row is one a run accepts
        assert cfg.trainer.batch_size in (32, 64, 128, 512)
        # trains what the seed trained: its normalisation, in fp32
        assert list(cfg.data.std) == [0.2023, 0.1994, 0.2010]
        assert cfg.trainer.precision.value == "fp32"


def test_rows_set_what_the_seed_tables_say():
    base = ["ablation=shake_tricks"]
    rows = {}
    for row in ("baseline", "sam", "asam", "cosine", "label_smooth"):
        cfg = compose_with_hydra([*base, f"+ablation/rows/shake_tricks={row}"])
        # multi-select groups (aug, trick) are not in runtime.choices: read the composed keys
        choices = cfg.hydra.runtime.choices
        rows[row] = (list(cfg.trick), choices.sched, choices.model)
    m = "shake_resnet26_2x64d"
    assert rows == {"baseline": ([], "multistep", m), "sam": (["sam"], "multistep", m),
                    "asam": (["asam"], "multistep", m), "cosine": ([], "cosine", m),
                    "label_smooth": (["label_smooth"], "multistep", m)}
    smoothed = compose_config([*base, "+ablation/rows/shake_tricks=label_smooth"])
    assert smoothed.trick.label_smooth.eps == 0.1
    # the seed's hard-coded SAM / ASAM settings
    assert compose_config([*base, "+ablation/rows/shake_tricks=sam"]).trick.sam.rho == 0.5
    asam = compose_config([*base, "+ablation/rows/shake_tricks=asam"]).trick.asam
    assert (asam.rho, asam.eta) == (0.5, 0.0)

    efficientnet = compose_config(["ablation=half_data_models",
                                   "+ablation/rows/half_data_models=efficientnetb0"])
    assert efficientnet.model.drop_path_rate == 0.0  # the seed's drop-connect never acted
    wrn = compose_config(["ablation=half_data_models",
                          "+ablation/rows/half_data_models=wideresnet"])
    assert list(wrn.trick) == ["xavier_init"]  # the seed's WRN-28-10 init
    assert list(compose_config(["ablation=wrn_aug"]).trick) == ["xavier_init"]
    zoo = compose_config(["ablation=shake_cifarzoo_1800",
                          "+ablation/rows/shake_cifarzoo_1800=cutout_mixup"])
    assert (zoo.optim.lr, zoo.optim.weight_decay, zoo.optim.nesterov) == (0.2, 1e-4, True)
    assert (zoo.aug.cutout.size, zoo.aug.mixup.alpha, zoo.trainer.epochs) == (8, 0.4, 1800)

    lrs = {}
    for job in jobs_of("transformers"):
        cfg = compose_config(["ablation=transformers", *job])
        lrs[cfg.model._target_.rsplit(".", 1)[-1]] = cfg.optim.lr
        assert cfg.sched._target_.endswith("cosine") and cfg.trainer.epochs == 200
    assert lrs == {"vision_transformer": 0.1, "mobilevit_s": 0.1, "mobilevit_xs": 0.1,
                   "mobilevit_xxs": 0.1, "coatnet_0": 0.01, "coatnet_1": 0.01, "coatnet_2": 0.01,
                   "cvt": 0.01, "swin_t": 0.01, "swin_s": 0.01}

    assert compose_config(["ablation=half_data_models"]).data.fraction == 0.5
    assert compose_config(["ablation=spp_study"]).data.fraction == 0.3
    assert compose_config(["ablation=shake_aug_combos"]).trainer.batch_size == 64
    assert compose_config(["ablation=shake_cosine_300"]).trainer.epochs == 300


def test_divide_co_train_experiment_is_the_seed_recipe():
    for overrides in (["experiment=divide_co_train"], ["ablation=divide_co_train"]):
        cfg = compose_with_hydra(overrides)
        c = cfg.hydra.runtime.choices
        assert (c.model, c.sched, c.optim) == ("pyramidnet272", "warmcosine", "nesterov")
        faithful = overrides[0].startswith("ablation")  # the ablation trains the seed's variants
        assert list(cfg.aug) == ["autoaugment", "random_erase_seed" if faithful else
                                 "random_erase", "mixup"]
        assert cfg.model.gate_per_sample is not faithful
        assert list(cfg.trick) == ["kaiming_init"]
        assert cfg.sched.warmup_epochs == 20
        assert cfg.trainer.epochs == 300 and cfg.trainer.batch_size == 128
        assert cfg.optim.lr == 0.1 and cfg.optim.weight_decay == 5e-4 and cfg.optim.nesterov
        assert cfg.optim.no_decay_bias_bn is True


def test_wrn_shake_search_optimises_val_acc_on_a_held_out_split():
    cfg = compose_with_hydra(["hparams_search=wrn_shake_optuna"])
    assert cfg.optimized_metric == "val_acc"
    assert cfg.data.val_size == 5000
    assert list(cfg.trick) == ["label_smooth"]
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.storage.startswith("sqlite:///") and sweeper.storage.endswith("optuna.db")
    assert set(sweeper.params) == {"model", "optim.lr", "optim.weight_decay",
                                   "trick.label_smooth.eps", "aug"}
    # every searched value is a valid override (list-valued aug choices included)
    parsed = OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in sweeper.params.items()])
    assert all(o.is_sweep_override() for o in parsed)


@pytest.mark.slow
def test_shrunk_ablation_runs_end_to_end_with_command_line_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    shrunk = ["ablation=shake_cutout_mixup", "model=resnet20", "data=synthetic",
              "data.num_train=128", "data.num_test=64", "trainer.epochs=1", "trainer.batch_size=32",
              "trainer.limit_eval_batches=1", f"hydra.sweep.dir={sweep}"]
    run_cli(*shrunk)  # the table once, then replicates: seed 0 is the job already done
    again = run_cli(*shrunk, "seed=0,1")
    assert (again.stdout + again.stderr).count("skipping") == 4
    jobs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert len(jobs) == 8, sorted(jobs)  # 4 stored rows x 2 command-line seeds
    assert all(s["status"] == "completed" for s in jobs.values())
    rows = {(o["aug"], s["seed"]) for s in jobs.values()
            for o in [dict(x.split("=", 1) for x in s["overrides"])]}
    assert rows == {(a, s) for a in ("[]", "[cutout]", "[mixup]", "[cutout,mixup]") for s in (0, 1)}
    # the report of the sweep: one row per aug list, mean ± std over the 2 seeds, its plots
    proc = run_cli_module("cifar_tricks.report", str(sweep))
    table = (sweep / "report.md").read_text()
    for aug in ("[]", "[cutout]", "[mixup]", "[cutout,mixup]"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {aug} |"))
        assert " ± " in row and "| 2 |" in row, row
    assert "| aug | test acc | n |" in table and proc.returncode == 0
    for picture in ("curves.png", "summary.png"):
        assert (sweep / picture).stat().st_size > 0
    # the seed's table beside ours: its rows in its order, its numbers, the tests against `none`
    seed = table[table.index("## The seed's table: README §3.5"):]
    rows = [line.split(" | ")[0].lstrip("| ") for line in seed.splitlines()
            if line.startswith("| ") and not line.startswith(("| row", "| :", "| what"))][:4]
    assert rows == ["none", "cutout", "mixup", "cutout+mixup"]
    for name, number in (("none", "96.33"), ("cutout", "96.99"), ("mixup", "96.60"),
                         ("cutout+mixup", "96.46")):
        line = next(x for x in seed.splitlines() if x.startswith(f"| {name} |"))
        assert f"| {number} |" in line and "(2) |" in line  # the seed's number, ours over 2 seeds
    assert "Δ vs none | 95% CI | p (Welch) | verdict" in seed
    assert "Where this recipe departs from what the seed's code ran" in seed


def run_cli_module(module: str, *args: str):
    import subprocess
    import sys

    from conftest import ROOT

    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
