"""bf16 autocast where the hardware multiplies bf16 natively: the decision table, without the hardware, and a
real tiny training in both precisions."""

import json

import pytest
import torch

from codistill.apps.train import train
from codistill.backends.hf import HFBackend
from codistill.errors import ConfigError
from codistill.precision import autocast, decide
from conftest import compose_config

AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
PLAIN = frozenset({"avx2", "avx512f"})


@pytest.mark.parametrize(
    ("precision", "device", "cuda_bf16", "flags", "expected"),
    [
        ("auto", "cpu", False, AVX512_BF16, torch.bfloat16),
        ("auto", "cpu", False, frozenset({"amx_bf16"}), torch.bfloat16),
        ("auto", "cpu", False, PLAIN, None),  # emulated bf16 is slower than fp32
        ("auto", "cuda", True, PLAIN, torch.bfloat16),
        ("auto", "cuda", False, AVX512_BF16, None),  # a V100: the GPU's support decides, not the CPU's
        ("auto", "mps", False, AVX512_BF16, None),
        ("bf16", "cpu", False, PLAIN, torch.bfloat16),  # asked for: given, if slow
        ("fp32", "cpu", False, AVX512_BF16, None),
        ("fp32", "cuda", True, PLAIN, None),
    ],
)
def test_the_decision_table(precision, device, cuda_bf16, flags, expected):
    assert decide(precision, device, cuda_bf16, flags) == expected


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(ConfigError, match="precision='fp16' is not one of: auto, bf16, fp32"):
        decide("fp16", "cpu", False, PLAIN)


def test_a_tiny_training_reaches_the_same_loss_in_bf16():
    """20 steps of a small MLP on a fixed regression, fp32 and bf16 autocast from the same start: bf16's
    8-bit mantissa moves the loss by well under 5% (weights and optimizer stay fp32)."""

    def train(precision: str) -> float:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 1))
        x, y = torch.randn(256, 64), torch.randn(256, 1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(20):
            with autocast(precision, torch.device("cpu")):
                loss = torch.nn.functional.mse_loss(model(x).float(), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            assert next(model.parameters()).dtype == torch.float32
        return loss.item()

    fp32, bf16 = train("fp32"), train("bf16")
    assert fp32 < 0.9  # it learnt something
    assert bf16 == pytest.approx(fp32, rel=0.05) and bf16 != fp32  # bf16 really ran


@pytest.mark.parametrize(
    ("precision", "accelerator", "expected"),
    [
        ("fp32", "cpu", "32-true"),
        ("bf16", "cpu", "bf16-mixed"),
        ("fp32", "gpu", "32-true"),
        ("bf16", "auto", "bf16-mixed"),
    ],
)
def test_the_trainer_precision_follows_the_runs_precision(tmp_path, cache_dir, precision, accelerator, expected):
    cfg = compose_config("train", tmp_path, cache_dir, [f"precision={precision}", f"trainer.accelerator={accelerator}"])
    assert cfg.trainer.precision == expected


def test_a_tiny_distillation_reaches_the_same_losses_in_bf16(tmp_path, cache_dir):
    """The default run's tiny distillation, 2 epochs in fp32 and in bf16 autocast (Lightning's bf16-mixed, the
    teacher scoring and generating in bf16 too): every validation loss within 3%; bf16 really ran."""
    losses = {}
    for precision in ("fp32", "bf16"):
        overrides = [f"precision={precision}", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2"]
        cfg = compose_config("train", tmp_path / precision, cache_dir, overrides)
        train(cfg)
        metrics = json.loads((tmp_path / precision / "out" / "metrics.json").read_text())["metrics"]
        losses[precision] = {k: v for k, v in metrics.items() if k.startswith("val/") and k.endswith("loss")}
    assert losses["fp32"] and set(losses["fp32"]) == set(losses["bf16"])
    for name, fp32 in losses["fp32"].items():
        assert losses["bf16"][name] == pytest.approx(fp32, rel=0.03), name
    assert losses["bf16"] != losses["fp32"]


def test_a_local_teacher_scores_in_bf16_close_to_fp32_and_stores_apart(tiny_teacher_dir):
    pairs = [("<fim-prefix>local x = 1\n<fim-suffix>\n<fim-middle>", "x = 2\n")]
    scores = {}
    for precision in ("fp32", "bf16"):
        backend = HFBackend.from_pretrained(tiny_teacher_dir, dtype="float32", precision=precision)
        scores[precision] = backend._score(pairs, top_k=4)[0]
        assert backend.name.endswith("(bf16 autocast)") == (precision == "bf16")
    fp32, bf16 = (torch.tensor(scores[p].topk_logprobs) for p in ("fp32", "bf16"))
    assert torch.allclose(fp32, bf16, atol=0.05) and not torch.equal(fp32, bf16)
