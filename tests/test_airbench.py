"""airbench (Jordan 2024, arXiv 2404.00498) as options: the airbench94/95/96 networks, the
data-initialised patch-whitening first layer (trick=[whiten_init]) and the scaled learning rate
of the normalisation biases (optim.norm_bias_lr_scale), each checked against its definition."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from cifar_tricks.build import build_run
from cifar_tricks.data import ImageData, Split
from cifar_tricks.errors import ConfigError
from cifar_tricks.models import create_model
from cifar_tricks.models.airbench import BatchNorm, Conv
from cifar_tricks.optim import create_optimizer, param_groups
from cifar_tricks.run_folder import RunFolder
from cifar_tricks.train import fit
from cifar_tricks.tricks.base import TrainState, Trick, Tricks
from cifar_tricks.tricks.whiten import WhitenInit
from cifar_tricks.validate import validate
from conftest import CONF, TINY, compose_config

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULES = sorted(p.stem for p in (CONF / "sched").glob("*.yaml"))


# ------------------------------------------------------------------------------------ models

@pytest.mark.parametrize("name, widths, momentum, convs_per_group", [
    ("airbench94", (64, 256, 256), 0.4, 2),
    ("airbench95", (128, 384, 384), 0.4, 2),
    ("airbench96", (128, 384, 512), 0.1, 3),
])
def test_airbench_layers_are_the_reference_definition(name, widths, momentum, convs_per_group):
    model = create_model(name, num_classes=10)
    whiten = model.stem[0]
    assert (whiten.in_channels, whiten.out_channels, whiten.kernel_size) == (3, 24, (2, 2))
    assert whiten.padding == (0, 0) and whiten.bias is not None
    assert [g.conv1.out_channels for g in model.layers] == list(widths)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 3 * convs_per_group
    for norm in norms:  # fixed unit scale (no parameter), trainable shift, eps 1e-12
        assert norm.eps == 1e-12 and norm.momentum == momentum
        assert norm.weight is None and norm.bias.requires_grad
    assert model.fc.bias is None and model.fc.in_features == widths[-1] == model.num_features
    assert all(p.requires_grad for p in model.parameters())


def test_airbench_convs_start_as_the_identity_on_their_first_input_channels():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 6)
    conv = Conv(5, 8)
    assert torch.allclose(conv(x)[:, :5], x, atol=1e-6)  # 3x3 'same': the centre tap is 1
    whiten = Conv(3, 24, 2, padding=0, bias=True)
    assert torch.count_nonzero(whiten.bias) == 0
    # a 2x2 kernel's Dirac tap is at (1, 1): output (y, x) reads input (y + 1, x + 1)
    assert torch.allclose(whiten(x[:, :3])[:, :3], x[:, :3, 1:, 1:], atol=1e-6)


def test_airbench94_head_is_a_global_max_then_linear_over_9():
    model = create_model("airbench94", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)  # 32 -2x2-> 31 -pool-> 15 -> 7 -> 3
        assert features.shape == (2, 256, 3, 3)
        expected = features.amax((2, 3)) @ model.fc.weight.T / 9
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_airbench96_group_adds_its_first_activation_around_the_last_two_convs():
    group = create_model("airbench96").layers[0].eval()
    with torch.no_grad():
        group.conv3.weight.zero_()  # the residual branch is then BN(0) = 0 (fresh statistics)
        x = torch.randn(2, 24, 8, 8)
        first = group.activ(group.norm1(group.pool(group.conv1(x))))
        assert torch.allclose(group(x), F.gelu(first), atol=1e-6)


def test_batchnorm_momentum_is_pytorchs_weight_of_the_new_batch():
    norm = BatchNorm(4, momentum=0.4).train()
    x = torch.randn(16, 4, 3, 3) + 2.0
    norm(x)
    assert torch.allclose(norm.running_mean, 0.4 * x.mean((0, 2, 3)), atol=1e-6)


# ------------------------------------------------------------------------------ whiten_init

def image_data(images: torch.Tensor, mean, std) -> ImageData:
    labels = torch.zeros(len(images), dtype=torch.long)
    split = Split(images, labels)
    return ImageData("tiny", 2, split, split, None, tuple(mean), tuple(std), 0, False)


def test_whiten_init_one_channel_1x1_by_hand():
    # pixels 51 and 102 (0.2 and 0.4 after /255, mean 0, std 1): E[x^2] = (0.04 + 0.16) / 2 = 0.1,
    # so the filters are +-1 / sqrt(0.1 + eps)
    images = torch.tensor([51, 102], dtype=torch.uint8).repeat(4, 1, 2, 1).reshape(4, 1, 2, 2)
    model = nn.Sequential(nn.Conv2d(1, 2, 1))
    trick = WhitenInit(num_images=4, eps=5e-4, bias_epochs=1)
    trick.setup_data(model, image_data(images, (0.0,), (1.0,)))
    trick.setup_model(model)
    expected = torch.tensor([1.0, -1.0]) / (0.1 + 5e-4) ** 0.5
    assert torch.allclose(model[0].weight.flatten(), expected, atol=1e-6)
    assert not model[0].weight.requires_grad


def test_whiten_init_whitens_the_patches_of_the_first_images():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(12, 1, 6, 6, generator=g) * 200  # correlated channels: a skewed moment
    images = (base + torch.rand(12, 3, 6, 6, generator=g) * 55).to(torch.uint8)
    images[8:] = 0  # beyond num_images: must not count
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    model = create_model("airbench94")
    trick = WhitenInit(num_images=8, eps=5e-4)
    trick.setup_data(model, image_data(images, mean, std))
    trick.setup_model(model)

    x = (images[:8].double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    patches = F.unfold(x, 2).transpose(1, 2).reshape(-1, 12)  # every 2x2 patch, (C, kh, kw)
    moment = patches.T @ patches / len(patches)
    eigenvalues = torch.linalg.eigvalsh(moment).flip(0)  # descending, as the filters
    weight = model.stem[0].weight.double()
    positive = F.conv2d(x, weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    out_moment = positive.T @ positive / len(positive)
    assert torch.allclose(out_moment, torch.diag(eigenvalues / (eigenvalues + 5e-4)), atol=1e-4)
    identity = torch.eye(12, dtype=torch.float64)
    assert torch.allclose(out_moment, identity, atol=0.05)  # the identity up to eps
    assert torch.equal(weight[12:], -weight[:12])
    assert not model.stem[0].weight.requires_grad and model.stem[0].bias.requires_grad


def test_whiten_init_trains_the_bias_for_bias_epochs_only():
    model = create_model("airbench94")
    trick = WhitenInit(bias_epochs=3)
    trainable = []
    for epoch in range(1, 6):
        trick.on_epoch_start(model, TrainState(epochs=5, steps_per_epoch=1, epoch=epoch))
        trainable.append(model.stem[0].bias.requires_grad)
    assert trainable == [True, True, True, False, False]


def test_whiten_init_refuses_a_first_conv_of_the_wrong_width():
    trick = WhitenInit()
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="2 x 3 x k\\^2 outputs"):
        trick.setup_data(create_model("resnet20"), image_data(images, (0.5,) * 3, (0.25,) * 3))


class Probe(Trick):
    """The whitening layer's weight and bias at the end of each epoch."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_epoch_end(self, model, state, row):
        conv = model.stem[0]
        self.seen.append((conv.weight.detach().clone(), conv.bias.detach().clone()))


def test_whiten_init_in_a_real_run_survives_kaiming_init_reaches_ema_and_freezes(tmp_path):
    cfg = compose_config(TINY + ["model=airbench94", "trick=[ema,kaiming_init,whiten_init]",
                                 "trick.whiten_init.bias_epochs=1",
                                 "trick.whiten_init.num_images=64", "trainer.epochs=2",
                                 "trainer.limit_train_batches=2", "trainer.limit_eval_batches=1",
                                 "trainer.batch_size=16", "trainer.eval_batch_size=16",
                                 "optim.lr=0.05"])
    run = build_run(cfg)
    x = (run.data.train.images[:64].float() / 255 - torch.tensor(run.data.mean).view(1, 3, 1, 1)) \
        / torch.tensor(run.data.std).view(1, 3, 1, 1)
    patches = F.unfold(x, 2).transpose(1, 2).reshape(-1, 12).double()
    weight = run.model.stem[0].weight.detach().clone()
    positive = patches @ weight[:12].flatten(1).double().T
    moment = positive.T @ positive / len(positive)
    assert torch.allclose(moment.diag(), torch.ones(12, dtype=torch.float64), atol=0.1)
    assert torch.equal(run.tricks.eval_model().stem[0].weight, weight)  # EMA copied it

    probe = Probe()
    run.tricks = Tricks({**run.tricks.named, "probe": probe})
    start_bias = run.model.stem[0].bias.detach().clone()
    fit(run, RunFolder(tmp_path))
    (w1, b1), (w2, b2) = probe.seen
    assert torch.equal(w1, weight) and torch.equal(w2, weight)  # frozen
    assert not torch.equal(b1, start_bias)  # epoch 1 trains the bias
    assert torch.equal(b2, b1)  # epoch 2 does not


# ---------------------------------------------------------------------- norm_bias_lr_scale

def small_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_norm_biases_get_lr_times_scale_and_decay_over_scale():
    model = small_model()
    conv, norm, linear = model[0], model[1], model[3]
    groups = param_groups(model, weight_decay=0.01, no_decay_bias_bn=False,
                          norm_bias_lr_scale=64, lr=0.1)
    assert [g["params"] for g in groups] == [
        [conv.weight, conv.bias, norm.weight, linear.weight, linear.bias], [norm.bias]]
    assert "lr" not in groups[0] and groups[0]["weight_decay"] == 0.01
    assert groups[1]["lr"] == pytest.approx(6.4) and groups[1]["weight_decay"] == 0.01 / 64

    groups = param_groups(model, weight_decay=0.01, no_decay_bias_bn=True,
                          norm_bias_lr_scale=64, lr=0.1)
    assert [g["params"] for g in groups] == [
        [conv.weight, linear.weight], [conv.bias, norm.weight, linear.bias], [norm.bias]]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0, 0.0]
    assert groups[2]["lr"] == pytest.approx(6.4)


def test_scale_one_is_the_plain_groups():
    model = small_model()
    for no_decay in (False, True):
        assert param_groups(model, 0.01, no_decay, norm_bias_lr_scale=1.0, lr=0.1) == \
            param_groups(model, 0.01, no_decay)


def test_sgd_step_moves_norm_biases_64x_with_the_same_absolute_decay():
    # all parameters 1, all gradients 1, lr 0.1, weight decay 0.01, no momentum:
    # others 1 - 0.1 (1 + 0.01) = 0.899; norm biases 1 - 6.4 (1 + 0.01 / 64) = 1 - 6.4 - 0.001
    cfg = compose_config(["optim=sgd", "optim.lr=0.1", "optim.momentum=0",
                          "optim.weight_decay=0.01", "+optim.norm_bias_lr_scale=64"])
    model = small_model()
    optimizer = create_optimizer(cfg.optim, model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
            p.grad = torch.ones_like(p)
    optimizer.step()
    norm_bias = model[1].bias
    assert torch.allclose(norm_bias, torch.full_like(norm_bias, 1 - 6.4 - 0.001))
    for p in model.parameters():
        if p is not norm_bias:
            assert torch.allclose(p, torch.full_like(p, 0.899))


@pytest.mark.parametrize("sched", SCHEDULES)
def test_every_schedule_keeps_the_norm_bias_lr_ratio(sched):
    """Every torch scheduler moves a group's lr from its own initial lr; a floor eta_min is one
    absolute lr for all groups, so the ratio is exact with the floor at 0 (cosine_restarts'
    default 1e-4 pulls both groups towards it: the ratio shrinks near the floor)."""
    cfg = compose_config(TINY + [f"sched={sched}", "+optim.norm_bias_lr_scale=64"])
    if "eta_min" in cfg.sched:
        cfg.sched.eta_min = 0.0
    optimizer = create_optimizer(cfg.optim, create_model("airbench94"))
    epochs = 300  # long enough for every schedule's milestones and warmup
    scheduler = instantiate(cfg.sched)(optimizer, steps_per_epoch=1, epochs=epochs)
    for _ in range(epochs):
        base, scaled = (g["lr"] for g in optimizer.param_groups)
        assert scaled == pytest.approx(64 * base, rel=1e-9, abs=1e-15)
        optimizer.step()
        scheduler.step()


def test_norm_bias_lr_scale_is_optional_checked_and_out_of_the_default_configs():
    cfg = compose_config(TINY)
    assert "norm_bias_lr_scale" not in cfg.optim  # absent: existing jobs keep their identity
    validate(compose_config(TINY + ["+optim.norm_bias_lr_scale=64"]))
    with pytest.raises(ConfigError, match="^optim.norm_bias_lr_scale must be a positive number"):
        validate(compose_config(TINY + ["+optim.norm_bias_lr_scale=0"]))


def test_the_patch_moment_over_several_chunks_is_the_moment_of_all_patches():
    """mean(p p^T) over every 2x2 patch of every image, accumulated chunk by chunk, equals the
    moment of all patches at once (unfold, by definition)."""
    from cifar_tricks.tricks.whiten import patch_moment

    torch.manual_seed(0)
    images = torch.randn(10, 3, 6, 6)
    patches = F.unfold(images, kernel_size=2).transpose(1, 2).reshape(-1, 12).double()
    expected = patches.T @ patches / len(patches)
    for chunk in (3, 10, 1000):
        torch.testing.assert_close(patch_moment(images, (2, 2), chunk=chunk), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_images=0), "^num_images must be at least 1"),
    (dict(eps=0.0), "^eps must be positive"),
    (dict(bias_epochs=-1), "^bias_epochs must be 0 or more"),
])
def test_whiten_init_refuses_bad_settings_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WhitenInit(**kwargs)


def test_whiten_init_accepts_the_smallest_allowed_settings():
    trick = WhitenInit(num_images=1, eps=1e-12, bias_epochs=0)
    assert (trick.num_images, trick.bias_epochs) == (1, 0)


def test_whiten_init_on_a_model_without_a_conv_says_which_model_to_use():
    data = ImageData("x", 10, Split(torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
                                    torch.zeros(4, dtype=torch.long)),
                     Split(torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
                           torch.zeros(2, dtype=torch.long)), None,
                     (0.5,) * 3, (0.25,) * 3, 0, False)
    with pytest.raises(ConfigError, match="^trick whiten_init needs a model whose first layer is "
                                          "a conv; this model has none .use e.g. model=airbench94"):
        WhitenInit(num_images=2).setup_data(nn.Sequential(nn.Flatten(), nn.Linear(192, 10)), data)


def test_whiten_init_before_it_saw_the_data_says_so():
    with pytest.raises(RuntimeError, match="^WhitenInit.setup_data must see the training data "
                                           "before setup_model"):
        WhitenInit().setup_model(nn.Conv2d(3, 24, 2))
