"""SLURM scale-out through hydra-submitit-launcher: conf/hydra/launcher/slurm.yaml composes into the
plugin's SLURM launcher with the knobs a requeued job needs, and a sweep runs end to end through
submitit's local executor (each job a fresh, unpickled Python process, as on a cluster)."""
from __future__ import annotations

import json

# the plugin is part of the test extra (pip install -e ".[test]"): a missing one is a failure
import hydra_plugins.hydra_submitit_launcher  # noqa: F401
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import CONF, run_cli

SLURM_TARGET = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL_TARGET = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


def launcher_config(*overrides: str):
    # importing cifar_tricks (conftest does) registers our schemas and resolvers
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


def test_slurm_launcher_composes_with_requeue_and_the_usual_knobs(tmp_path):
    launcher = launcher_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                               f"hydra.sweep.dir={tmp_path}")
    assert launcher._target_ == SLURM_TARGET
    assert launcher.max_num_timeout > 0  # a timed-out job is requeued and resumes its checkpoint
    assert launcher.partition == "gpu"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
    assert launcher.cpus_per_task == 8 and launcher.mem_gb == 32
    assert launcher.timeout_min == 240 and launcher.array_parallelism == 8
    assert list(launcher.setup) == []
    assert launcher.submitit_folder == f"{tmp_path}/.submitit/%j"  # under the sweep dir
    # the plugin's own keys stay available as overrides
    for key in ("qos", "account", "constraint", "signal_delay_s", "additional_parameters"):
        assert key in launcher

    local = launcher_config("hydra/launcher=slurm_local")
    assert local._target_ == LOCAL_TARGET and local.timeout_min == 240 and "gpus_per_node" in local


def test_slurm_launcher_renders_a_valid_sbatch_script(tmp_path, monkeypatch):
    """The knobs reach sbatch under the names SLURM knows, the way the plugin passes them on
    (no cluster needed: submitit's "is srun here" check is stubbed)."""
    import submitit
    import submitit.slurm.slurm as submitit_slurm
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    launcher = instantiate(launcher_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                           f"hydra.sweep.dir={tmp_path}"))
    monkeypatch.setattr(submitit_slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    params = dict(launcher.params)
    executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())  # as BaseSubmititLauncher.launch does
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    assert executor._executor.max_num_timeout == 10
    script = executor._executor._make_submission_file_text("python -m job", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--ntasks-per-node=1",
                 "--cpus-per-task=8", "--mem=32GB", "--time=240", "--signal=USR2@120",
                 f"--output={tmp_path}/.submitit/%j/"):
        assert f"#SBATCH {line}" in script, script


@pytest.mark.slow
def test_sweep_runs_through_the_submitit_local_launcher(tmp_path):
    # ${now:...%f} in the sweep dir: every worker must see the submitting process's timestamp
    sweep_root = tmp_path / "multirun"
    run_cli("-m", "hydra/launcher=submitit_local", "experiment=smoke", "data.num_train=128",
            "data.num_test=64", "data.val_size=32", "trainer.limit_eval_batches=1",
            "trainer.num_threads=1", "seed=0,1",
            f"hydra.sweep.dir={sweep_root}/${{now:%H-%M-%S-%f}}",
            "hydra.launcher.timeout_min=5", timeout=240)
    (sweep,) = sweep_root.iterdir()  # both jobs in one sweep folder
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert len(summaries) == 2, sorted(summaries)
    assert sorted(s["seed"] for s in summaries.values()) == [0, 1]
    assert all(s["status"] == "completed" for s in summaries.values()), summaries
    # the job folders are named by our job_dir resolver, so the workers had it registered
    assert all(name.startswith("data.num_test=64,") for name in summaries), sorted(summaries)
    # submitit ran each job in its own process, with its logs under the sweep dir
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2
