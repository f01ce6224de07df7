"""cifar-tricks' Ray launcher, a Hydra plugin (Hydra loads launchers from `hydra_plugins`)."""
