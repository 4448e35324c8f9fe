"""Hidden-state (feature) distillation: the distances, the layer map, the pairing of the two sides' target
rows, the one forward pass per model, and a real tiny training whose projection is never exported."""

import csv
import glob
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors.torch import load_file

from codistill.apps.train import train
from codistill.assembly import assemble, prepare
from codistill.errors import ConfigError
from codistill.losses import (
    DistillationLoss,
    HiddenSettings,
    HiddenStateMatch,
    evenly_spaced,
    hidden_distance,
    target_mask,
)
from conftest import compose_config, santacoder_at_toy_size

CAUSAL, ONLINE = "student=tiny_gpt_bigcode", "teacher_logits=online"
HIDDEN = [CAUSAL, "loss=forward_kl_hidden", ONLINE]


def widths(layers: int, width: int) -> SimpleNamespace:
    """What HiddenStateMatch reads of a transformers config."""
    return SimpleNamespace(num_hidden_layers=layers, hidden_size=width)


def test_the_distances_by_hand():
    s, t = torch.tensor([[1.0, 2.0], [1.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    assert hidden_distance(s, t, "mse").tolist() == [2.5, 5.0]
    cosine = hidden_distance(torch.tensor([[1.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 5.0], [1.0, 1.0]]), "cosine")
    torch.testing.assert_close(cosine, torch.tensor([1.0, 0.0]))  # orthogonal; parallel at any scale


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_no_loss_when_the_teachers_states_are_the_projections_linear_map_of_the_students(distance):
    """The teacher's states are W s + b of the student's at the paired targets (the i-th target of an example on
    each side, wherever its prompt ends); with the projection set to (W, b) the loss is nothing, and not
    without it. The second example's teacher side was cut to two targets: its third student target is unpaired."""
    torch.manual_seed(0)
    settings = HiddenSettings(layers=[[1, 2], [2, 3]], distance=distance)
    match = HiddenStateMatch(settings, widths(2, 4), widths(3, 6)).double()
    student_mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    teacher_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    student = [torch.randn(6, 4, dtype=torch.float64) for _ in match.pairs]
    teacher = []
    for projection, s in zip(match.projections, student, strict=True):
        weight, bias = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
        with torch.no_grad():
            projection.weight.copy_(weight)
            projection.bias.copy_(bias)
        teacher.append(F.linear(s[[0, 1, 2, 3, 4]], weight, bias))  # student target 5 has no teacher target
    assert match(student, student_mask, teacher, teacher_mask).item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        match.projections[1].weight.add_(0.1)
    assert match(student, student_mask, teacher, teacher_mask).item() > 1e-4


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_gradients_are_exact(distance):
    torch.manual_seed(0)
    teacher = torch.randn(5, 6, dtype=torch.float64)

    def loss(student, weight, bias):
        return hidden_distance(F.linear(student, weight, bias), teacher, distance).mean()

    inputs = (torch.randn(5, 4), torch.randn(6, 4), torch.randn(6))
    assert torch.autograd.gradcheck(loss, [x.double().requires_grad_() for x in inputs])
    assert torch.autograd.gradcheck(
        lambda s, t: hidden_distance(s, t, distance).sum(),
        (torch.randn(3, 6, dtype=torch.float64, requires_grad=True), teacher[:3].clone().requires_grad_()),
    )


def test_evenly_spaced_layer_maps_end_at_the_last_layers():
    assert evenly_spaced(2, 2, 2) == [(1, 1), (2, 2)]
    assert evenly_spaced(8, 24, 8) == [(k, 3 * k) for k in range(1, 9)]  # TinyBERT's uniform map
    assert evenly_spaced(8, 24, 2) == [(4, 12), (8, 24)]
    assert HiddenSettings().pairs(1, 2) == [(1, 2)]  # null: as many pairs as the shallower model has layers
    assert HiddenSettings(layers=2).pairs(3, 6) == [(1, 3), (3, 6)]
    assert HiddenSettings.of(OmegaConf.create({"layers": [[0, 0], [2, 5]]})).pairs(2, 5) == [(0, 0), (2, 5)]


@pytest.mark.parametrize(
    "node, depths, message",
    [
        ({"layers": [[3, 1]]}, (2, 2), r"student layer 3 .* 0..2 .*: set loss.hidden.layers to pairs within them"),
        ({"layers": 3}, (2, 4), "set loss.hidden.layers to at most 2, or list the pairs"),
        ({"layers": [[1]]}, (2, 2), r"not a list of \[student layer, teacher layer\] pairs: write it as"),
        ({"layers": 0}, (2, 2), "pairs no layers: set it to 1 or more"),
        ({"distance": "l1"}, (2, 2), "loss.hidden.distance='l1' is not one of: mse, cosine"),
        ({"weight": 0}, (2, 2), "must be > 0 .*loss.hidden=null"),
        ({"layer": 2}, (2, 2), "loss.hidden.layer is not a setting: use distance, layers, weight"),
    ],
)
def test_a_bad_layer_map_is_one_line_naming_the_fix(node, depths, message):
    with pytest.raises(ConfigError, match=message) as error:
        loss = DistillationLoss("forward_kl", hidden=OmegaConf.create(node))
        HiddenStateMatch(loss.hidden, widths(depths[0], 4), widths(depths[1], 8))
    assert "\n" not in str(error.value)


def test_hidden_states_pair_position_by_position_so_need_the_teachers_tokenizer():
    loss = DistillationLoss(hidden={})  # labels and hidden states, no divergence: the teacher is still read
    assert loss.needs_teacher and loss.hidden == HiddenSettings()
    with pytest.raises(ConfigError, match="use a student with the teacher's tokenizer, or set loss.hidden=null"):
        loss.check_vocabularies({"a": 0}, {"a": 0, "b": 1})
    loss.check_vocabularies({"a": 0}, {"a": 0})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([*HIDDEN, "loss.hidden.layers=[[1,9]]"], "set loss.hidden.layers to pairs within them"),  # checked on load
        (["student=tiny_t5", "loss=forward_kl_hidden", ONLINE], "needs a causal student with the teacher's tokenizer"),
        ([CAUSAL, "loss=forward_kl_hidden", "teacher_logits=offline"], "set teacher_logits=online"),
        ([CAUSAL, "loss=label_only", "+loss.hidden.weight=1", "~teacher_logits"], "set teacher_logits=online"),
    ],
)
def test_impossible_settings_fail_before_training_naming_the_fix(tmp_path, cache_dir, overrides, message):
    cfg = compose_config("train", tmp_path, cache_dir, ["debug=fdr", *overrides])
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_one_forward_pass_per_model_gives_the_logits_and_the_states(tmp_path, cache_dir):
    """The student's and the teacher's states come from the forward pass that gives their logits at the
    targets, and they are those of a plain forward pass with output_hidden_states there."""
    parts = assemble(prepare(compose_config("train", tmp_path, cache_dir, ["debug=fdr", *HIDDEN])))
    parts.datamodule.setup()
    batch = next(iter(parts.datamodule.train_dataloader()))
    module, source = parts.module, parts.module.teacher
    calls = {"student": 0, "teacher": 0}
    for name, model in (("student", module.model), ("teacher", source.model)):
        model.base_model.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    torch.manual_seed(0)  # the student trains: the same dropout in both passes
    losses = module.losses(batch)
    assert calls == {"student": 1, "teacher": 1}
    assert {"label_loss", "kd_loss", "hidden_loss", "loss"} <= set(losses) and losses["hidden_loss"] > 0
    match, label, tokens = module.hidden_match, batch["label"], batch["teacher"]
    student_mask = target_mask(label["labels"], shift=True)[0]
    torch.manual_seed(0)
    with torch.no_grad():
        s = module.model(label["input_ids"], attention_mask=label["attention_mask"], output_hidden_states=True)
        t = source.model(tokens.input_ids, attention_mask=tokens.attention_mask, output_hidden_states=True)
        expected = match(
            [s.hidden_states[i][student_mask] for i in match.student_layers],
            student_mask,
            [t.hidden_states[i][tokens.mask] for i in match.teacher_layers],
            tokens.mask,
        )
    torch.testing.assert_close(losses["hidden_loss"].detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["loss"], losses["label_loss"] * 0.5 + losses["kd_loss"] * 0.5 + expected)
    assert not any("projection" in name for name in module.model.state_dict())  # the student model has none


def test_a_tiny_santacoder_run_learns_the_teachers_hidden_states_and_exports_no_projection(
    tmp_path, cache_dir, tiny_teacher_dir
):
    """experiment=moonscript_santacoder_tiny_kd loss=forward_kl_hidden with santacoder's architecture at toy
    size: the 32-wide student's states are projected to the 64-wide teacher's; the hidden loss falls over 30
    steps; the checkpoint holds the projections (a resumed run goes on with them), the saved student does not."""
    overrides = [
        *santacoder_at_toy_size(tmp_path, tiny_teacher_dir, layers=2),
        "loss=forward_kl_hidden",
        "dataset.corpus.max_files=3",
        "data.label_source=ground_truth",  # a random teacher's middles carry no signal
        "data.micro_batch_size=4",
        "data.max_target_length=32",
        "model.warmup_steps=0",
        "model.optimizer.lr=3e-3",
        "+trainer.max_steps=30",
        "trainer.max_epochs=100",
        "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=null",
        "+trainer.val_check_interval=30",
        "+trainer.limit_val_batches=1",
    ]
    cfg = compose_config("train", tmp_path, cache_dir, overrides)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    (metrics_csv,) = glob.glob(f"{out}/csv/*/metrics.csv")
    curve = [float(r["train/hidden_loss"]) for r in csv.DictReader(open(metrics_csv)) if r.get("train/hidden_loss")]
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert len(curve) == 30 and last < 0.8 * first and curve[-1] < curve[0], curve  # 0.56 -> 0.40 when written
    assert json.loads((out / "metrics.json").read_text())["metrics"]["val/hidden_loss"] > 0
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    projections = {k: v.shape for k, v in state.items() if k.startswith("hidden_match.")}
    assert projections["hidden_match.projections.0.weight"] == (64, 32)  # student width -> teacher width
    saved = load_file(out / "student" / "model.safetensors")
    assert saved and {f"model.{k}" for k in saved} <= set(state) - set(projections)
    assert not any("projection" in k or k.startswith("hidden_match") for k in saved)
