"""Every option shows its effect in the real loop, as its definition says.

Each test trains a tiny run through `train.fit` watched by PyTorch hooks (tests/loop_probe.py) and
holds what the loop did against the option's definition: the paper's formula or torch's
reference class, computed here from the recorded inputs. Where an effect could be absent without
any error (a hook never called, a flag ignored), the test also shows that the run without the
option differs, so the assertion can fail.
"""
from __future__ import annotations

import copy
import csv
import math

import pytest
import torch
import torch.nn.functional as F

from cifar_tricks.models import create_model
from conftest import TINY, options, train_in_process
from loop_probe import evaluate_by_hand, normalised, probed_fit, stored_train_images

pytestmark = pytest.mark.usefixtures("one_thread")

FEW = ["trainer.limit_train_batches=3", "trainer.checkpoint=false"]
RAW = ["data.crop=false", "data.flip=false"]  # the stored images, unaugmented


def closest_stored(images: torch.Tensor, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image, the index of the stored image sharing most pixels with it, and the
    (H, W) mask of pixels that differ from that stored image."""
    equal = ((images[:, None] - stored[None]).abs() < 1e-4).all(dim=2)  # (B, N, H, W)
    index = equal.flatten(2).sum(-1).argmax(1)
    return index, ~equal[torch.arange(len(images)), index]


# ------------------------------------------------------------------------------ tricks

def test_grad_clip_bounds_the_norm_the_optimizer_steps_with(tmp_path):
    _, free, _ = probed_fit(tmp_path / "free", FEW)
    bound = min(s.grad_norm for s in free.steps) / 2  # every step's gradient must be clipped
    _, clipped, _ = probed_fit(tmp_path / "clip", FEW + ["trick=[grad_clip]",
                                                         f"trick.grad_clip.max_norm={bound}"])
    assert len(clipped.steps) == 3
    for step in clipped.steps:  # clip_grad_norm_: g * max_norm / (||g|| + 1e-6)
        assert step.grad_norm == pytest.approx(bound, rel=1e-4)
    # the first step sees the same gradient in both runs: clipping rescales it, direction kept
    first_free, first_clipped = free.steps[0], clipped.steps[0]
    scale = bound / (first_free.grad_norm + 1e-6)
    for g_free, g_clip in zip(first_free.grads, first_clipped.grads):
        torch.testing.assert_close(g_clip, g_free * scale, rtol=1e-4, atol=1e-9)


def test_ema_evaluates_the_average_of_the_trained_weights(tmp_path):
    """trick=[ema] decay d, no warm-up: after updates with weights w_1..w_k the evaluated model is
    w_1 (the first update copies), then e <- d e + (1 - d) w_t, buffers included; the reported
    test loss and accuracy are that model's."""
    decay = 0.6
    run, probe, summary = probed_fit(tmp_path, FEW + [
        "model=resnet20", "trick=[ema]", f"trick.ema.decay={decay}", "trick.ema.warmup=false"],
        keep_states=True)
    expected = {}
    for step in probe.steps:
        for key, value in step.state_after.items():
            if not value.is_floating_point():
                continue
            expected[key] = value.clone() if key not in expected else \
                decay * expected[key] + (1 - decay) * value
    averaged = run.tricks.eval_model().state_dict()
    assert set(expected) <= set(averaged) and any("running_mean" in k for k in expected)
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-5, atol=1e-6)
    by_hand = copy.deepcopy(run.model)
    by_hand.load_state_dict({**run.model.state_dict(), **expected})
    loss, acc = evaluate_by_hand(by_hand, run)
    assert summary.test_acc == pytest.approx(acc, abs=1e-4)
    assert summary.test_loss == pytest.approx(loss, rel=1e-4)
    raw_loss, _ = evaluate_by_hand(run.model, run)
    assert raw_loss != pytest.approx(loss, rel=1e-4)  # the trained weights are not the average


def test_label_smoothing_changes_the_training_loss_and_never_the_evaluation_loss(tmp_path):
    eps = 0.2
    run, probe, summary = probed_fit(tmp_path, FEW + ["trick=[label_smooth]",
                                                      f"trick.label_smooth.eps={eps}"])
    assert len(probe.losses) == 3
    for call in probe.losses:  # Szegedy et al. 2016: q = (1 - eps) y + eps / K
        labels = call.targets.argmax(1)
        smoothed = (1 - eps) * F.one_hot(labels, 10) + eps / 10
        expected = -(smoothed * F.log_softmax(call.logits, 1)).sum(1).mean()
        assert call.loss.item() == pytest.approx(expected.item(), rel=1e-6)
        # an untrained net's near-uniform logits make the two losses close, not equal
        assert abs(call.loss.item() - F.cross_entropy(call.logits, labels).item()) > 1e-4
    mean_loss = torch.stack([c.loss for c in probe.losses]).mean().item()
    assert summary.train_loss == pytest.approx(mean_loss, rel=1e-5)  # equal batches
    loss, acc = evaluate_by_hand(run.model, run)  # plain cross-entropy, no smoothing
    assert summary.test_loss == pytest.approx(loss, rel=1e-4)
    assert summary.test_acc == pytest.approx(acc, abs=1e-4)


@pytest.fixture(scope="module")
def confident_teacher(tmp_path_factory):
    """A LeNet run trained until its logits are large (the synthetic classes are separable):
    with near-uniform logits T^2 KL hardly depends on T, and a test could not see T."""
    run = tmp_path_factory.mktemp("teacher")
    train_in_process(TINY + ["model=lenet", "trainer.epochs=4", "optim.lr=0.05", "seed=7"], run)
    return run / "checkpoints" / "last.pt"


def soft_cross_entropy(logits, targets, eps=0.0):
    k = logits.shape[1]
    return -(((1 - eps) * targets + eps / k) * F.log_softmax(logits, 1)).sum(1).mean()


@pytest.mark.parametrize("smoothing", [None, 0.2])
def test_distillation_trains_on_hintons_loss_with_the_teachers_logits(tmp_path, smoothing,
                                                                      confident_teacher):
    """trick=[kd]: loss = (1 - a) base(z_s, y) + a T^2 KL(softmax(z_t / T) || softmax(z_s / T))
    (Hinton et al. 2015), z_t the teacher run's reported weights on the images the student saw;
    the base is the cross-entropy, or the label-smoothed one with trick=[label_smooth,kd]."""
    alpha, t = 0.7, 3.0
    tricks = "[label_smooth,kd]" if smoothing else "[kd]"
    _, probe, _ = probed_fit(tmp_path, FEW + [
        f"trick={tricks}", "trick.kd.teacher=lenet", f"trick.kd.checkpoint={confident_teacher}",
        f"trick.kd.alpha={alpha}", f"trick.kd.temperature={t}"]
        + ([f"trick.label_smooth.eps={smoothing}"] if smoothing else []))
    teacher = create_model("lenet", num_classes=10)
    teacher.load_state_dict(torch.load(confident_teacher, weights_only=True)["eval_model"])
    teacher.eval()
    assert len(probe.losses) == 3

    def hinton(call, z_t, temperature, eps):
        p_t = F.softmax(z_t / temperature, 1)
        kl = (p_t * (p_t.log() - F.log_softmax(call.logits / temperature, 1))).sum(1).mean()
        base = soft_cross_entropy(call.logits, call.targets, eps)
        return (1 - alpha) * base + alpha * temperature ** 2 * kl

    for call in probe.losses:
        with torch.no_grad():
            z_t = teacher(call.images)
        assert z_t.std() > 1  # confident: the temperature matters
        expected = hinton(call, z_t, t, smoothing or 0.0)
        assert call.loss.item() == pytest.approx(expected.item(), rel=1e-5)
        # each part is seen: another temperature, the other base, the student alone
        assert abs(call.loss.item() - hinton(call, z_t, 4.0, smoothing or 0.0).item()) > 1e-3
        assert abs(call.loss.item() - hinton(call, z_t, t, 0.2 - (smoothing or 0)).item()) > 1e-4
        student_only = F.cross_entropy(call.logits, call.targets.argmax(1))
        assert abs(call.loss.item() - student_only.item()) > 1e-3


def first_batchnorm(model: torch.nn.Module) -> torch.nn.BatchNorm2d:
    return next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("trick", ["sam", "asam"])
def test_sam_takes_two_gradients_per_step_and_updates_batchnorm_statistics_once(tmp_path, trick):
    """trick=[sam] / [asam]: two forward/backward passes per step (at w and at w + e(w));
    BatchNorm's running statistics move in the first pass only (momentum 0.1, unbiased variance),
    and the reported training loss is the loss at w."""
    bn_inputs = []

    def watch_first_batchnorm(run):
        first_batchnorm(run.model).register_forward_pre_hook(
            lambda m, args: bn_inputs.append(args[0].detach().clone()) if m.training else None)

    run, probe, summary = probed_fit(tmp_path, FEW + ["model=resnet20", f"trick=[{trick}]"],
                                     prepare=watch_first_batchnorm)
    assert len(probe.steps) == 3 and len(probe.forwards) == len(probe.losses) == 6
    assert len(bn_inputs) == 6
    bn = first_batchnorm(run.model)
    assert bn.num_batches_tracked.item() == 3
    mean, var = torch.zeros_like(bn.running_mean), torch.ones_like(bn.running_var)
    for x in bn_inputs[::2]:  # the first pass of each step
        mean = 0.9 * mean + 0.1 * x.mean((0, 2, 3))
        var = 0.9 * var + 0.1 * x.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-6)
    first_pass = torch.stack([c.loss for c in probe.losses[::2]]).mean().item()
    assert summary.train_loss == pytest.approx(first_pass, rel=1e-5)
    second_pass = torch.stack([c.loss for c in probe.losses[1::2]]).mean().item()
    assert second_pass != pytest.approx(first_pass, rel=1e-4)


@pytest.mark.parametrize("trick", ["kaiming_init", "xavier_init", None])
def test_weight_init_tricks_set_the_weights_the_first_step_starts_from(tmp_path, trick):
    """He et al. 2015: conv ~ N(0, 2 / fan_out), linear ~ N(0, 0.01^2); Glorot & Bengio 2010:
    U(-a, a), a = sqrt(6 / (fan_in + fan_out)); both zero the biases. LeNet's own (PyTorch's
    default) initialisation has non-zero biases and other spreads."""
    run, probe, _ = probed_fit(tmp_path, FEW + ([f"trick=[{trick}]"] if trick else []))
    start = dict(zip([id(p) for p in probe.params], probe.steps[0].before))
    conv = max((m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)),
               key=lambda m: m.weight.numel())
    linear = max((m for m in run.model.modules() if isinstance(m, torch.nn.Linear)),
                 key=lambda m: m.weight.numel())
    biases = [start[id(m.bias)] for m in (conv, linear)]
    if trick is None:
        assert all(b.abs().sum() > 0 for b in biases)
        return
    assert all(torch.equal(b, torch.zeros_like(b)) for b in biases)
    for module in (conv, linear):
        weight = start[id(module.weight)]
        fan_out = module.weight.shape[0] * module.weight[0, 0].numel()
        fan_in = module.weight[0].numel()
        if trick == "kaiming_init":
            std = math.sqrt(2 / fan_out) if module is conv else 0.01
        else:
            std = math.sqrt(2 / (fan_in + fan_out))
            assert weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        assert weight.std().item() == pytest.approx(std, rel=0.06)  # 2,400+ samples: 3 sigma


# ------------------------------------------------------------------------------ data flags

@pytest.mark.parametrize("crop, flip", [(False, False), (False, True), (True, False), (True, True)])
def test_crop_and_flip_flags_decide_what_the_model_sees(tmp_path, crop, flip):
    """data.crop=false data.flip=false: the model sees the stored images with their labels;
    flip adds mirrored ones; crop shows 32 x 32 windows of the 4-padded image (zeros outside)."""
    run, probe, _ = probed_fit(tmp_path, FEW + [f"data.crop={str(crop).lower()}",
                                                f"data.flip={str(flip).lower()}"])
    stored, labels = stored_train_images(run)
    seen = torch.cat([f.images for f in probe.forwards])
    targets = torch.cat([c.targets for c in probe.losses]).argmax(1)
    zero = normalised(run, torch.zeros(1, 3, 1, 1))  # a padded pixel, normalised
    padded = zero.expand(len(stored), 3, 40, 40).clone()
    padded[:, :, 4:36, 4:36] = stored
    kinds = set()
    for image, label in zip(seen, targets):
        candidates = {}
        for dy in range(-4, 5) if crop else [0]:
            for dx in range(-4, 5) if crop else [0]:
                window = padded[:, :, 4 + dy:36 + dy, 4 + dx:36 + dx]
                for mirrored in (False, True) if flip else (False,):
                    view = window.flip(-1) if mirrored else window
                    hit = ((view - image).abs().amax((1, 2, 3)) < 1e-4).nonzero()
                    if len(hit):
                        candidates[(dy, dx, mirrored)] = hit[:, 0]
        assert candidates, "an input that is no allowed view of a stored image"
        assert any((labels[i] == label).any() for i in candidates.values())
        kinds |= set(candidates)
    if flip:
        assert {k[2] for k in kinds} == {False, True}  # both mirrored and unmirrored seen
    if crop:
        assert any(k[:2] != (0, 0) for k in kinds)  # shifted windows seen
    if not crop and not flip:
        assert kinds == {(0, 0, False)}


def test_batch_size_and_limit_train_batches_set_the_steps(tmp_path):
    _, probe, _ = probed_fit(tmp_path, ["trainer.batch_size=24", "trainer.limit_train_batches=5",
                                        "trainer.epochs=2", "trainer.checkpoint=false"])
    assert [len(f.images) for f in probe.forwards] == [24] * 10 and len(probe.steps) == 10


def test_without_a_limit_an_epoch_is_every_full_batch_of_the_training_split(tmp_path):
    _, probe, _ = probed_fit(tmp_path, ["trainer.batch_size=48", "trainer.checkpoint=false"])
    assert [len(f.images) for f in probe.forwards] == [48] * (256 // 48)  # the last is dropped


@pytest.mark.parametrize("fraction, val_size", [(0.5, 0), (1.0, 64), (0.5, 64)])
def test_fraction_and_val_size_decide_which_images_are_trained_on(tmp_path, fraction, val_size):
    """data.val_size holds images out of training (stratified); data.fraction trains on that
    share of the rest: one epoch shows exactly those images, once each, never a held-out one."""
    run, probe, _ = probed_fit(tmp_path, RAW + [f"data.fraction={fraction}",
                                                f"data.val_size={val_size}",
                                                "trainer.batch_size=8", "trainer.checkpoint=false"])
    train_size = int(fraction * (256 - val_size))
    assert len(run.data.train) == train_size
    assert run.data.val is None if not val_size else len(run.data.val) == val_size
    seen = torch.cat([f.images for f in probe.forwards])
    assert len(seen) == train_size - train_size % 8
    index, changed = closest_stored(seen, stored_train_images(run)[0])
    assert not changed.any() and len(set(index.tolist())) == len(seen)  # stored, each once
    if val_size:  # no held-out image is trained on
        held_out = normalised(run, run.data.val.images)
        assert ((seen[:, None] - held_out[None]).abs().flatten(2).amax(-1) > 1e-3).all()


def test_mean_and_std_are_the_normalisation_the_model_sees(tmp_path):
    mean, std = [0.2, 0.4, 0.6], [0.1, 0.3, 0.5]
    run, probe, _ = probed_fit(tmp_path, FEW + RAW + [f"data.mean={mean}", f"data.std={std}"])
    seen = probe.forwards[0].images
    raw = run.data.train.images.float()
    by_hand = (raw / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    distance = (seen[:, None] - by_hand[None]).abs().flatten(2).amax(-1).min(1).values
    assert (distance < 1e-4).all()


@pytest.mark.parametrize("threads, deterministic", [(1, True), (2, False)])
def test_threads_and_deterministic_are_in_force_during_training(tmp_path, threads, deterministic):
    seen = []

    def record(run):
        run.model.register_forward_hook(lambda *args: seen.append(
            (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())))

    try:
        probed_fit(tmp_path, FEW + [f"trainer.num_threads={threads}",
                                    f"trainer.deterministic={str(deterministic).lower()}"],
                   prepare=record)
    finally:  # both are process-wide: leave them as the other tests expect
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(1)
    assert set(seen) == {(threads, deterministic)}


@pytest.mark.parametrize("tta", ["flip", "flip_translate"])
def test_eval_tta_reports_the_accuracy_of_the_averaged_views_after_the_last_epoch(tmp_path, tta):
    """airbench's infer_mirror(x) = (f(x) + f(mirror x)) / 2; flip_translate adds the two
    one-pixel shifts of the reflect-padded image: 1/2 infer_mirror(x) + 1/4 each shift's."""
    run, _, summary = probed_fit(tmp_path, FEW + [f"trainer.eval_tta={tta}", "trainer.epochs=2"])
    model = run.model.eval()
    images, labels = normalised(run, run.data.test.images), run.data.test.labels

    def mirror(x):
        return (model(x) + model(x.flip(-1))) / 2

    with torch.no_grad():
        logits = mirror(images)
        if tta == "flip_translate":
            padded = F.pad(images, (1,) * 4, mode="reflect")
            shifted = [padded[..., :32, :32], padded[..., 2:34, 2:34]]
            logits = logits / 2 + sum(mirror(x) for x in shifted) / 4
    by_hand = 100 * (logits.argmax(1) == labels).float().mean().item()
    assert summary.tta_test_acc == pytest.approx(by_hand, abs=1e-4)
    first, last = csv.DictReader(open(tmp_path / "metrics.csv"))
    assert float(last["tta_test_loss"]) == pytest.approx(F.cross_entropy(logits, labels).item(),
                                                         rel=1e-4)
    assert not first["tta_test_acc"]  # the last epoch only


def test_limit_eval_batches_evaluates_the_first_batches_only(tmp_path):
    run, _, summary = probed_fit(tmp_path, FEW + ["trainer.limit_eval_batches=1",
                                                  "trainer.eval_batch_size=48"])
    model = run.model.eval()
    with torch.no_grad():
        logits = model(normalised(run, run.data.test.images[:48]))
    labels = run.data.test.labels[:48]
    assert summary.test_acc == pytest.approx(
        100 * (logits.argmax(1) == labels).float().mean().item(), abs=1e-4)
    assert summary.test_loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-4)


@pytest.mark.parametrize("checkpoint", [True, False])
def test_trainer_checkpoint_decides_whether_last_pt_is_written(tmp_path, checkpoint):
    probed_fit(tmp_path, ["trainer.limit_train_batches=2",
                          f"trainer.checkpoint={str(checkpoint).lower()}"])
    assert (tmp_path / "checkpoints" / "last.pt").exists() == checkpoint


# ------------------------------------------------------------------------------ augmentations

MIXING = {"mixup", "cutmix", "ricap"}
REGION = {"cutout", "random_erase", "random_erase_seed"}


@pytest.mark.parametrize("name", options("aug"))
def test_every_augmentation_changes_the_batches_the_model_sees(tmp_path, name):
    """With crop and flip off, each aug option alters what the model trains on, in its way:
    cutout and random erasing change one rectangle of an image and nothing else; mixup, cutmix
    and RICAP train on soft targets (rows summing to 1, some below 1 at the top); the policies
    (AutoAugment, RandAugment, TrivialAugment) show images that are no stored image."""
    run, probe, _ = probed_fit(tmp_path, FEW + RAW + [f"aug=[{name}]"])
    stored, _ = stored_train_images(run)
    seen = torch.cat([f.images for f in probe.forwards])
    targets = torch.cat([c.targets for c in probe.losses])
    torch.testing.assert_close(targets.sum(1), torch.ones(len(targets)))
    if name in MIXING:
        assert (targets.max(1).values < 1 - 1e-6).any()
        return
    assert (targets.max(1).values == 1).all()  # one-hot: the policies and erasing keep labels
    _, changed = closest_stored(seen, stored)
    assert changed.any(), f"aug=[{name}] left every image as stored"
    if name in REGION:
        for mask in changed[changed.flatten(1).any(1)]:
            rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
            box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert box.float().mean() > 0.9  # the changed pixels fill one rectangle
            if name == "cutout":
                assert box.shape[0] <= 16 and box.shape[1] <= 16


def test_training_accuracy_under_mixup_is_the_target_mass_on_the_prediction(tmp_path):
    """soft_accuracy's definition: a prediction earns the target's weight on its class (0.7 for
    one source class of a 0.7/0.3 mixup), so train_acc is the mean target mass at the argmax."""
    _, probe, summary = probed_fit(tmp_path, FEW + ["aug=[mixup]"])
    mass = torch.cat([c.targets.gather(1, c.logits.argmax(1, keepdim=True))[:, 0]
                      for c in probe.losses])
    assert summary.train_acc == pytest.approx(100 * mass.mean().item(), rel=1e-5)
    assert (mass[mass > 0] < 1).any()  # mixed targets: some credit is partial


# ------------------------------------------------------------------------------ precision

@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_dtype_of_the_training_forward(tmp_path, precision, dtype):
    run, probe, _ = probed_fit(tmp_path, FEW + ["model=resnet20",
                                                f"trainer.precision={precision}"])
    assert {f.logits.dtype for f in probe.forwards} == {dtype}
    assert {p.dtype for p in run.model.parameters()} == {torch.float32}  # fp32 master weights
    assert all(c.loss.dtype == torch.float32 for c in probe.losses)  # the loss in fp32


def test_fp16_skips_a_step_whose_gradients_overflowed_and_lowers_the_scale(tmp_path):
    """torch.amp.GradScaler, as trainer.precision=fp16 promises: a step with an inf gradient is
    not taken (the optimizer never steps) and the loss scale is halved; the others step."""
    backward_calls = []

    def poison_the_second_backward(run):
        weight = next(run.model.parameters())
        weight.register_hook(lambda grad: (backward_calls.append(1), torch.full_like(
            grad, float("inf")) if len(backward_calls) == 2 else grad)[1])

    run, probe, _ = probed_fit(tmp_path, FEW + ["trainer.precision=fp16"],
                               prepare=poison_the_second_backward)
    assert len(backward_calls) == len(probe.losses) == 3
    assert len(probe.steps) == 2  # the poisoned step was skipped
    assert run.scaler.get_scale() == 2.0 ** 16 * 0.5  # the initial scale, backed off once


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_reaches_the_model_inputs_and_weights(tmp_path, channels_last):
    run, probe, _ = probed_fit(tmp_path, FEW + ["model=resnet20",
                                                f"trainer.channels_last={str(channels_last).lower()}"])
    assert {f.channels_last for f in probe.forwards} == {channels_last}
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    convs = [m.weight for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=memory_format) for w in convs)


# ------------------------------------------------------------------------------ optimizers

def reference_first_update(name: str, cfg: dict, p: torch.Tensor, g: torch.Tensor,
                           decayed: bool, norm_bias: bool) -> torch.Tensor:
    """The parameter after the first step, from each optimizer's definition (float64)."""
    p, g = p.double(), g.double()
    lr, wd = cfg["lr"], cfg.get("weight_decay", 0.0)
    if not decayed:
        wd = 0.0
    if norm_bias and cfg.get("norm_bias_lr_scale", 1.0) != 1.0:
        scale = cfg["norm_bias_lr_scale"]  # airbench: lr x s, weight decay / s
        lr, wd = lr * scale, wd / scale
    if name in ("sgd", "nesterov", "airbench_sgd"):
        d = g + wd * p  # the first momentum buffer is d itself
        return p - lr * ((1 + cfg["momentum"]) * d if cfg["nesterov"] else d)
    b1, b2 = cfg["betas"]
    eps = cfg.get("eps", 1e-8)
    if name in ("adam", "adamw"):  # bias-corrected first moments: m_hat = g', v_hat = g'^2
        gd = g + wd * p if name == "adam" else g
        start = p * (1 - lr * wd) if name == "adamw" else p
        return start - lr * gd / (gd.abs() + eps)
    # AdaBound (Luo et al. 2019, reference code): step size lr sqrt(1 - b2^t) / (1 - b1^t)
    # divided by sqrt(v) + eps, clipped to [eta_l(t), eta_u(t)], times m; t = 1
    gd = g + wd * p if name == "adabound" else g
    m, v = (1 - b1) * gd, (1 - b2) * gd * gd
    step = lr * math.sqrt(1 - b2) / (1 - b1) / (v.sqrt() + eps)
    final, gamma = cfg["final_lr"], cfg["gamma"]
    step = step.clamp(final * (1 - 1 / (gamma + 1)), final * (1 + 1 / gamma))
    start = p * (1 - wd) if name == "adaboundw" else p  # AdaBoundW: decoupled, p <- p (1 - wd)
    return start - step * m


@pytest.mark.parametrize("no_decay", [False, True])
@pytest.mark.parametrize("name", options("optim"))
def test_every_optimizer_takes_its_defined_first_step(tmp_path, name, no_decay):
    overrides = ["model=resnet20", "trainer.limit_train_batches=1", "trainer.checkpoint=false",
                 f"optim={name}", f"optim.no_decay_bias_bn={str(no_decay).lower()}",
                 "sched=constant"]
    run, probe, _ = probed_fit(tmp_path, overrides)
    cfg = run.config["optim"]  # the composed settings (experiment=smoke sets the lr)
    owner = {}
    for module in run.model.modules():
        for pname, param in module.named_parameters(recurse=False):
            owner[id(param)] = (module, pname)
    (step,) = probe.steps
    assert step.lrs[0] == pytest.approx(cfg["lr"])
    for param, before, after, grad in zip(probe.params, step.before, step.after, step.grads):
        module, pname = owner[id(param)]
        is_norm = isinstance(module, torch.nn.modules.batchnorm._NormBase)
        decayed = not no_decay or (param.ndim > 1 and pname != "bias" and not is_norm)
        expected = reference_first_update(name, cfg, before, grad, decayed,
                                          is_norm and pname == "bias")
        # float32 rounding: up to 8 units in the last place of the operands p and the update
        # (weight decay alone moves p by lr x wd x p, over 80 such units here)
        scale = before.double().abs() + (expected - before.double()).abs()
        error = (after.double() - expected).abs()
        assert (error <= 2.0 ** -21 * scale + 1e-12).all(), \
            f"{type(module).__name__}.{pname}: off by {(error / scale).max():.2e} relative"


# ------------------------------------------------------------------------------ schedules

EPOCHS, SPE = 3, 4
N = EPOCHS * SPE
SHORT = {  # each schedule's lengths scaled to a 3-epoch run of 4 steps per epoch
    "multistep": ["sched.milestones=[1,2]"], "step": ["sched.step_size=1"],
    "warmup": ["sched.warmup_epochs=1", "sched.milestones=[2]"],
    "warmcosine": ["sched.warmup_epochs=1"], "cosine_restarts": ["sched.T_0=1"],
}


def cos_between(start: float, end: float, frac: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * frac)) / 2


def defined_lr(name: str, lr: float, t: int) -> float:
    """The lr of update t (0-based) of a 12-step run, from each schedule's definition."""
    e = t // SPE
    if name == "constant":
        return lr
    if name == "cosine":
        return cos_between(lr, 0.0, t / N)
    if name == "multistep":
        return lr * 0.2 ** e
    if name == "step":
        return lr * 0.1 ** e
    if name == "warmup":  # Goyal et al.: linear from lr/3 over the first epoch, then multistep
        return lr * (1 / 3 + 2 / 3 * t / SPE) if t < SPE else lr * 0.2 ** (e >= 2)
    if name == "warmcosine":
        if t < SPE:
            return lr * (0.01 + 0.99 * t / SPE)
        return cos_between(lr, 0, (t - SPE) / (N - SPE))
    if name == "cosine_restarts":  # SGDR: periods of 1 then 2 epochs
        if t < SPE:
            return cos_between(lr, 1e-4, t / SPE)
        return cos_between(lr, 1e-4, (t - SPE) / (2 * SPE))
    if name == "onecycle":  # torch's OneCycleLR: peak at step pct_start * N - 1
        peak, low, end = 0.3 * N - 1, lr / 25, lr / 25 / 1e4
        if t <= peak:
            return cos_between(low, lr, t / peak)
        return cos_between(lr, end, (t - peak) / (N - 1 - peak))
    if name == "warmlinear":  # airbench: 0.2 -> 1 over int(0.23 N) steps, then 1 -> 0.07 at N
        w = int(0.23 * N)
        return lr * (0.2 + 0.8 * t / w if t < w else 1 + (0.07 - 1) * (t - w) / (N - w))
    raise KeyError(name)


@pytest.mark.parametrize("name", options("sched"))
def test_every_schedule_sets_the_lr_of_each_step_as_defined(tmp_path, name):
    run, probe, _ = probed_fit(tmp_path, [
        f"sched={name}", *SHORT.get(name, []), f"trainer.epochs={EPOCHS}",
        f"trainer.limit_train_batches={SPE}", "trainer.checkpoint=false", "optim.lr=0.1"])
    lrs = [s.lrs[0] for s in probe.steps]
    assert len(lrs) == N
    assert lrs == pytest.approx([defined_lr(name, 0.1, t) for t in range(N)], rel=1e-6, abs=1e-12)
