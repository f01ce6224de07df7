"""cifar-tricks' Optuna sweeper, a Hydra plugin (Hydra loads sweepers from `hydra_plugins`)."""
