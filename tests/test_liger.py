"""liger-kernel's fused path against the torch path. Triton kernels: these run on a CUDA GPU with liger-kernel
installed (`pip install 'codistill[liger]'`) and are skipped elsewhere, CI included; the choice of path is
tested on CPU in test_losses.py, and that the fused path's inputs make the logits in test_distillation.py."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from codistill.apps.train import train
from codistill.losses import IGNORE_INDEX, Dense, DistillationLoss, Projected, Projection, liger_installed
from conftest import compose_config

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and liger_installed()), reason="needs a CUDA GPU and liger-kernel"
)
B, H, TEACHER_H, V = 3, 64, 96, 1000


def batch(generator):
    """Student labels [B, L] after prompts of different lengths, and a teacher mask [B, L + 4] with as many
    targets per row, except the last row, whose teacher side was truncated by two (so not every target is
    paired)."""
    labels = torch.randint(V, (B, 40), generator=generator)
    for row, prompt in enumerate((5, 9, 2)):
        labels[row, :prompt] = IGNORE_INDEX
    counts = (labels[:, 1:] != IGNORE_INDEX).sum(1)  # shifted: position j predicts label j + 1
    counts[-1] -= 2
    teacher_mask = torch.arange(44).expand(B, -1) >= (44 - counts).unsqueeze(1)
    return labels.cuda(), teacher_mask.cuda()


@pytest.mark.parametrize(
    ("divergence", "beta", "temperature"), [("forward_kl", 0.5, 1.0), ("reverse_kl", 0.5, 1.0), ("jsd", 0.3, 2.0)]
)
def test_the_fused_kernels_equal_the_torch_path(divergence, beta, temperature):
    generator = torch.Generator().manual_seed(0)
    hidden = (0.5 * torch.randn(B, 40, H, generator=generator)).cuda().requires_grad_()
    weight = (0.3 * torch.randn(V, H, generator=generator)).cuda().requires_grad_()
    t_hidden = (0.5 * torch.randn(B, 44, TEACHER_H, generator=generator)).cuda()
    t_weight = (0.3 * torch.randn(V, TEACHER_H, generator=generator)).cuda()
    labels, teacher_mask = batch(generator)
    loss = DistillationLoss(divergence, ce_weight=0.5, temperature=temperature, beta=beta)

    torch_path = loss(hidden @ weight.T, labels, Dense(t_hidden @ t_weight.T, teacher_mask), shift=True)
    torch_grads = torch.autograd.grad(torch_path["loss"], (hidden, weight))
    fused = loss(Projection(hidden, weight), labels, Projected(t_hidden, t_weight, teacher_mask), shift=True)
    fused_grads = torch.autograd.grad(fused["loss"], (hidden, weight))

    for name in ("label_loss", "kd_loss", "loss"):
        torch.testing.assert_close(fused[name], torch_path[name], rtol=1e-4, atol=1e-5)
    for mine, reference in zip(fused_grads, torch_grads, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-3, atol=1e-6)


def test_a_training_with_the_fused_kernels_matches_the_torch_path(tmp_path, cache_dir):
    """Recipe 2's tiny KD training on the GPU, once per kernel, same seed: the same losses."""
    metrics = {}
    for kernel in ("liger", "torch"):
        overrides = ["debug=fdr", "experiment=textbook_tiny", "loss=forward_kl", f"loss.kernel={kernel}"]
        cfg = compose_config(
            "train", tmp_path, cache_dir, [*overrides, "trainer=gpu", "trainer.precision=32-true", "after_training={}"]
        )
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / kernel)
        train(cfg)
        metrics[kernel] = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())["metrics"]
    for name in ("val/label_loss", "val/kd_loss", "val/loss"):
        assert metrics["liger"][name] == pytest.approx(
            metrics["torch"][name], rel=1e-2
        )  # the teacher runs in bf16 on a GPU: its logits round differently
