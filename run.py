"""cifar-tricks entry point: compose the config, build its objects, train, return the objective.

    python run.py                                   # WRN-28-10 on CIFAR-10, the seed's recipe
    python run.py experiment=smoke                  # offline check in seconds
    python run.py -m optim.lr=0.05,0.1 seed=0,1     # a grid, one folder per job under multirun/
    python run.py hparams_search=lr_wd_optuna       # Optuna search on validation accuracy
    python run.py mode=lr_find model=resnet20       # learning-rate range test

Everything happens in the package (`cifar_tricks.jobs.main`); this file only points Hydra at
`conf/`. Importing `cifar_tricks` registers the config schemas and resolvers.
"""
import sys

import hydra
from omegaconf import DictConfig

from cifar_tricks import jobs


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return jobs.main(cfg)


if __name__ == "__main__":
    sys.argv[1:] = jobs.command_line(sys.argv[1:])
    main()
