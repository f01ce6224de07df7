"""`python -m cifar_tricks.models`: the instant model listing (parameters counted on meta builds,
which must equal the initialised models' counts), its filter, --num-classes, --flops, --readme."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from cifar_tricks.models import create_model, get_model_entry, list_models
from cifar_tricks.models.__main__ import main
from cifar_tricks.models._table import count_params, meta_build, param_count

pytestmark = pytest.mark.usefixtures("one_thread")


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows by model name (header and rule rows left out)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "model":
            rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("name", list_models())
def test_meta_build_has_exactly_the_initialised_models_parameters_and_allocates_nothing(name):
    with meta_build():
        meta = create_model(name, num_classes=10)
    assert all(t.is_meta for t in [*meta.parameters(), *meta.buffers()])
    real = create_model(name, num_classes=10)
    assert count_params(meta) == count_params(real)
    assert [(n, p.shape) for n, p in meta.named_parameters()] == \
        [(n, p.shape) for n, p in real.named_parameters()]
    assert [(n, b.shape) for n, b in meta.named_buffers()] == \
        [(n, b.shape) for n, b in real.named_buffers()]


def test_param_count_follows_the_number_of_classes():
    for classes in (10, 20, 100):
        real = create_model("resnet20", num_classes=classes)
        assert param_count("resnet20", classes) == count_params(real)
    # the head is 64 features -> classes, with a bias
    assert param_count("resnet20", 100) - param_count("resnet20", 10) == 90 * 65


def test_meta_build_ends_with_its_block_even_on_an_error():
    with pytest.raises(ValueError), meta_build():
        create_model("resnet20", shortcut="C")
    model = create_model("resnet20")
    assert not any(p.is_meta for p in model.parameters())
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_listing_filters_by_name_or_family_and_counts_without_flops(capsys):
    main(["resnet2"])
    out = capsys.readouterr().out
    rows = table_rows(out)
    expected = [n for n in list_models() if "resnet2" in n or "resnet2" in get_model_entry(n)[1]]
    assert list(rows) == expected and "resnet20" in rows and "resnet56" not in rows
    assert "GFLOPs" not in out
    for name, (_, family, params) in rows.items():
        assert family == get_model_entry(name)[1]
        assert params == f"{count_params(create_model(name)) / 1e6:.3f}"


def test_family_filter_and_num_classes(capsys):
    main(["WIDE_RESNET", "--num-classes", "100"])
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert set(rows) == {n for n in list_models() if get_model_entry(n)[1] == "wide_resnet"}
    assert out.startswith("Params for 100 classes")
    name = min(rows, key=lambda n: param_count(n))
    assert rows[name][2] == f"{count_params(create_model(name, num_classes=100)) / 1e6:.3f}"


def test_flops_on_request(capsys):
    main(["resnet20", "--flops"])
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["resnet20"]
    # resnet20 is ~40.8M multiply-accumulates, i.e. ~81.6M FLOPs
    assert abs(float(rows["resnet20"][3]) * 1e9 / (2 * 40.8e6) - 1) < 0.10


@pytest.mark.parametrize("argv, message", [
    (["no_such_model"], "no registered model has 'no_such_model'"),
    (["resnet", "--readme", "README.md"], "--readme writes the full table"),
    (["--num-classes", "0"], "--num-classes 0"),
])
def test_bad_requests_name_the_fix(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_lists_every_model_in_seconds():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cifar_tricks.models"], capture_output=True,
                          text=True, timeout=120, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    elapsed = time.perf_counter() - start
    assert list(table_rows(proc.stdout)) == list_models()
    # it used to count every model's FLOPs (15 s to 2 min on 2 busy cores); now about 3 s
    assert elapsed < 60, f"listing took {elapsed:.0f} s"
