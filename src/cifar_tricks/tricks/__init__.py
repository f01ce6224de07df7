"""Training tricks: the hook interface (`base`) and the components the tricks wrap.

Components, each importable on its own:
    `distillation`  KDLoss, load_teacher (Hinton et al. 2015)
    `ema`           ModelEMA, an exponential moving average of the weights and BN buffers
    `init`          kaiming_init, xavier_init (He et al. 2015, Glorot & Bengio 2010)
SAM/ASAM, an optimizer wrapper, lives in `cifar_tricks.optim.sam`.
"""
