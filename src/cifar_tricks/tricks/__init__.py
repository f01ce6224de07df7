"""Training tricks: the hook interface (`base`) and the components the tricks wrap.

One module per option of `conf/trick/` (named after it), each holding the trick and the
component it wraps, importable on its own:
    `label_smooth`  LabelSmoothing (Szegedy et al. 2016)
    `kd`            KDLoss, load_teacher, KnowledgeDistillation (Hinton et al. 2015)
    `sam`           SharpnessAware: `sam` and `asam` (the optimizer is `cifar_tricks.optim.sam`)
    `ema`           ModelEMA, EMA: an exponential moving average of the weights and BN buffers
    `init`          kaiming_init, xavier_init (He et al. 2015; Glorot & Bengio 2010)
    `grad_clip`     GradClip (Pascanu et al. 2013)
    `lookahead`     Lookahead: slow weights synced every k steps (Zhang et al. 2019, as airbench)
"""
