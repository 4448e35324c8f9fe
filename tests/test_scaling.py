"""Scaling by config: strategies, a real 2-process DDP run on CPU, multiruns, cluster environments, wandb."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from datasets import load_from_disk
from hydra.utils import instantiate
from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment, TorchElasticEnvironment
from pytorch_lightning.strategies import DDPStrategy, DeepSpeedStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from codistill.apps.train import train
from codistill.assembly import assemble, prepare
from codistill.losses import IGNORE_INDEX, DistillationLoss
from codistill.models.causal import CausalDistiller
from codistill.models.export import trained_model
from codistill.models.fim import FIMDistiller
from codistill.models.loading import load_causal_student, load_student
from conftest import TINY_TEACHER, compose_config, free_port

FIM = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>"}

TRAINERS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "trainer").glob("*.yaml"))


def _cli(tmp_path, cache_dir, *args, env=None):
    env = {**os.environ, "CODISTILL_ROOT": str(tmp_path), "WANDB_MODE": "offline", **(env or {})}
    command = [sys.executable, "-m", "codistill.apps.train", *args, *TINY_TEACHER, f"paths.cache_dir={cache_dir}"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("name", TRAINERS)
def test_every_trainer_config_builds_its_strategy_on_cpu(tmp_path, cache_dir, name):
    cfg = compose_config("train", tmp_path, cache_dir, [f"trainer={name}"])
    strategy = cfg.trainer.get("strategy")
    if strategy is None:
        assert name in ("default", "cpu", "gpu")
        return
    if "DeepSpeed" in strategy._target_:
        pytest.importorskip("deepspeed")
    built = instantiate(strategy)
    if name.startswith("deepspeed"):
        zero = built.config["zero_optimization"]
        assert zero["stage"] == (2 if name.endswith("2") else 3)
        assert ("offload_param" in zero) == name.endswith("offload")
        assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.gradient_clip_val == 1.0
    else:
        assert isinstance(built, DDPStrategy)
        trainer = instantiate(cfg.trainer, strategy=built, accelerator="cpu", devices=2, logger=False)
        assert isinstance(trainer, pl.Trainer) and trainer.world_size == 2


@pytest.mark.thorough  # multi-process DDP training: torchrun's test in the quick suite
def test_two_process_ddp_training_on_cpu(tmp_path, cache_dir):
    done = _cli(tmp_path, cache_dir, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "debug=fdr")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1, "every rank must share the one run folder"
    summary = json.loads((runs[0] / "metrics.json").read_text())
    assert (runs[0] / "student" / "config.json").is_file()
    (data_dir,) = [p for p in (tmp_path / "data").iterdir() if p.name != "store"]
    assert summary["validation_rows"] == len(load_from_disk(str(data_dir))["validation"])  # both ranks' rows


def test_a_multirun_gives_each_job_its_folder_and_wandb_run_in_one_group(tmp_path, cache_dir):
    done = _cli(
        tmp_path, cache_dir, "-m", "experiment=step_by_step_tiny", "loss.alpha=0.2,0.8", "debug=fdr", "logger=wandb"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = list((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    groups = []
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["metrics"]["val/loss"] > 0
        (run,) = list((job / "wandb").glob("offline-run-*"))
        (log,) = list(run.glob("*.wandb"))
        groups.append(log.read_bytes().count(f"train-{sweep.name}".encode()) > 0)
    assert groups == [True, True]


@pytest.mark.thorough  # an error path of the multirun the quick suite runs
def test_multi_device_jobs_in_the_basic_launcher_are_refused(tmp_path, cache_dir):
    done = _cli(
        tmp_path,
        cache_dir,
        "-m",
        "loss.alpha=0.2,0.8",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "debug=fdr",
    )
    assert done.returncode == 2 and "hydra/launcher=slurm" in done.stderr


@pytest.mark.parametrize(
    "env, kind, rank",
    [
        (
            {
                "TORCHELASTIC_RUN_ID": "x",
                "RANK": "3",
                "LOCAL_RANK": "1",
                "GROUP_RANK": "1",
                "WORLD_SIZE": "4",
                "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "29500",
            },
            TorchElasticEnvironment,
            3,
        ),
        (
            {
                "SLURM_NTASKS": "4",
                "SLURM_NTASKS_PER_NODE": "2",
                "SLURM_PROCID": "2",
                "SLURM_LOCALID": "0",
                "SLURM_NODEID": "1",
                "SLURM_JOB_NAME": "codistill",
                "SLURM_JOB_ID": "7",
                "SLURM_NODELIST": "node[1-2]",
            },
            SLURMEnvironment,
            2,
        ),
    ],
)
def test_torchrun_and_slurm_launches_are_picked_up(tmp_path, cache_dir, monkeypatch, env, kind, rank):
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)  # the Trainer sets it process-wide
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = compose_config(
        "train",
        tmp_path,
        cache_dir,
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=2"],
    )
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.cluster_environment, kind)
    assert (trainer.world_size, trainer.global_rank, trainer.num_nodes) == (4, rank, 2)


def test_wandb_logs_predictions_the_student_and_no_secret(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_never_logged")
    overrides = [  # a short real run: fast_dev_run would swap the loggers for dummies
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "trainer.check_val_every_n_epoch=1",
        "dataset.corpus.max_files=3",
        "logger=wandb",
        "logger.wandb.log_model=true",
        "+hub_token=${oc.env:HF_TOKEN}",
    ]
    train(compose_config("train", tmp_path, cache_dir, overrides))
    (run,) = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    written = b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file())
    assert b"val/predictions" in written and b"train/label_loss" in written and b"val/edit_sim" in written
    assert b"student-" in written  # the exported student, as a model artifact
    assert b"hf_secret_never_logged" not in written and b"<redacted>" in written


@pytest.mark.thorough  # recipe 2's sweep (test_launch) runs the README's
def test_an_optuna_sweep_optimises_the_metric_train_returns(tmp_path, cache_dir):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = ["-m", "hparams_search=optuna", "experiment=step_by_step_tiny", "hydra.sweeper.n_trials=2", "debug=fdr"]
    done = _cli(tmp_path, cache_dir, *sweep)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = list((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in results and "loss.alpha" in results and "model.optimizer.lr" in results
    scores = [json.loads((sweep / j / "metrics.json").read_text())["metrics"]["val/edit_sim"] for j in ("0", "1")]
    assert f"best_value: {max(scores)}" in results


def test_a_run_resumes_from_its_last_checkpoint(tmp_path, cache_dir):
    base = ["dataset.corpus.max_files=3", "trainer.check_val_every_n_epoch=1", "+trainer.limit_val_batches=1"]
    train(compose_config("train", tmp_path / "a", cache_dir, base + ["trainer.max_epochs=1"]))
    last = tmp_path / "a" / "out" / "checkpoints" / "last.ckpt"
    first_steps = torch.load(last, weights_only=False)["global_step"]
    train(compose_config("train", tmp_path / "b", cache_dir, base + ["trainer.max_epochs=2", f"ckpt_path={last}"]))
    resumed = torch.load(tmp_path / "b" / "out" / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * first_steps  # one more epoch, not two


def _modules(kind: str, tiny_student_dir: str, tiny_teacher_dir: str):
    """(LightningModule, a batch for its model) for each recipe's student."""
    if kind == "seq2seq":
        student = load_student(tiny_student_dir)
        module = FIMDistiller(student.model, student.tokenizer, DistillationLoss(), optimizer=None)
    else:  # the causal module carries a buffer (tokens_seen) that is not a model weight
        student = load_causal_student(tiny_teacher_dir)
        module = CausalDistiller(student.model, student.tokenizer, optimizer=None)
        module.tokens_seen += 123
    ids = student.tokenizer(["x = 1\n", "y = {2}\n"], padding=True, return_tensors="pt")
    return module, {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], "labels": ids["input_ids"]}


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_a_zero_checkpoint_folder_exports_a_plain_student(
    tmp_path, tiny_student_dir, tiny_teacher_dir, monkeypatch, kind
):
    """A real ZeRO-2 checkpoint in Lightning's layout (DeepSpeed runs on CPU, Lightning's strategy does
    not), merged into the weights the exported student gets, for both recipes' modules."""
    deepspeed = pytest.importorskip("deepspeed")
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }.items():
        monkeypatch.setenv(key, value)
    module, batch = _modules(kind, tiny_student_dir, tiny_teacher_dir)
    config = {
        "train_batch_size": 2,
        "zero_optimization": {"stage": 2},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}},
    }
    try:
        engine, *_ = deepspeed.initialize(model=module, model_parameters=module.parameters(), config=config)
        engine.backward(engine.module.model(**batch).loss)
        engine.step()
        engine.save_checkpoint(str(tmp_path / "last.ckpt"), tag="checkpoint", client_state={"epoch": 0})
        trained = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    finally:
        torch.distributed.destroy_process_group()
        deepspeed.utils.groups._WORLD_GROUP = None  # DeepSpeed caches the destroyed group for the next engine
    strategy = instantiate({"_target_": "pytorch_lightning.strategies.DeepSpeedStrategy", "stage": 2})
    exported = trained_model(module, str(tmp_path / "last.ckpt"), strategy)
    assert exported is not module.model
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in trained.items())
    exported.save_pretrained(tmp_path / "student")
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    reloaded = auto.from_pretrained(tmp_path / "student")
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in trained.items())
    if kind == "seq2seq":
        assert not torch.equal(trained["lm_head.weight"], trained["shared.weight"])  # flan-t5's own head survives


class Batches(pl.Callback):
    """The training batches a fit trains on, in order (their label inputs)."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(batch["label"]["input_ids"].tolist())


class CrashAfter(Batches):
    """A crash after optimizer step `step`, mid-epoch; records the optimizer's state at every step before."""

    def __init__(self, step: int):
        super().__init__()
        self.step, self.states = step, {}

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        optimizer = trainer.optimizers[0]
        self.states[trainer.global_step] = [state["exp_avg"].clone() for state in optimizer.state.values()]
        if trainer.global_step == self.step:
            raise RuntimeError("killed mid-epoch")


class Restored(Batches):
    """What a resumed fit starts from: its step, schedule and optimizer state; the batches it trains on."""

    def on_train_start(self, trainer, pl_module) -> None:
        optimizer, schedule = trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler
        self.step, self.schedule_step = trainer.global_step, schedule.last_epoch
        self.exp_avg = [state["exp_avg"].clone() for state in optimizer.state.values()]


def test_a_run_killed_mid_epoch_resumes_from_its_step_checkpoint_with_optimizer_schedule_step_and_batches(
    tmp_path, cache_dir
):
    """`checkpoint_every_n_steps` writes last.ckpt within an epoch: a crash at step 5 of a 14-step epoch resumes
    from step 4, not from the start, and trains on the epoch's batches from the fifth on: together the two fits
    train on exactly the batches of an uninterrupted run, none twice (Lightning alone replays the epoch)."""
    overrides = ["checkpoint_every_n_steps=4", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=10"]
    cfg = compose_config("train", tmp_path, cache_dir, overrides)
    parts = assemble(prepare(cfg))
    crash = CrashAfter(5)
    parts.trainer.callbacks.append(crash)
    with pytest.raises(RuntimeError, match="killed mid-epoch"):
        parts.trainer.fit(parts.module, datamodule=parts.datamodule)
    last = Path(cfg.paths.output_dir, "checkpoints", "last.ckpt")
    assert torch.load(last, weights_only=False)["global_step"] == 4
    resumed, restored = assemble(prepare(cfg)), Restored()
    resumed.trainer.callbacks.append(restored)
    resumed.trainer.fit(resumed.module, datamodule=resumed.datamodule, ckpt_path=str(last))
    assert restored.step == 4 and restored.schedule_step == 4
    for mine, saved in zip(restored.exp_avg, crash.states[4], strict=True):
        torch.testing.assert_close(mine, saved)
    uninterrupted, batches = assemble(prepare(cfg)), Batches()
    uninterrupted.trainer.callbacks.append(batches)
    uninterrupted.trainer.fit(uninterrupted.module, datamodule=uninterrupted.datamodule)
    assert resumed.trainer.global_step == len(batches.seen) == 2 * uninterrupted.trainer.num_training_batches
    assert crash.seen[:4] + restored.seen == batches.seen


@pytest.mark.parametrize("student", ["student=tiny_gpt_bigcode", "student=tiny_t5"])
def test_gradient_checkpointing_changes_memory_not_the_gradients(tmp_path, cache_dir, student):
    """`model.gradient_checkpointing=true` recomputes activations in the backward pass: same loss, same
    gradients, in both recipes' students."""

    def assembled(switch: bool):
        overrides = [student, "loss=label_only", f"model.gradient_checkpointing={switch}"]
        return assemble(prepare(compose_config("train", tmp_path, cache_dir, overrides)))

    assert assembled(True).module.model.is_gradient_checkpointing
    parts = assembled(False)
    module = parts.module
    assert not module.model.is_gradient_checkpointing
    parts.datamodule.setup()
    batch = next(iter(parts.datamodule.train_dataloader()))
    grads = []
    for switch in (False, True):
        if switch:
            module.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        module.model.zero_grad()
        torch.manual_seed(0)  # the same dropout masks (the recomputation replays the RNG state)
        module.losses(batch)["loss"].backward()
        grads.append([p.grad.clone() for p in module.model.parameters() if p.grad is not None])
    assert grads[1] and len(grads[0]) == len(grads[1])
    for off, on in zip(*grads, strict=True):
        torch.testing.assert_close(on, off)


def test_zero3_generation_gathers_the_student_once_and_trains_on_after(tmp_path, tiny_teacher_dir, monkeypatch):
    """DeepSpeed's ZeRO-3 engine on CPU (gloo, one rank): validation's generation runs on the whole student,
    gathered once, with no per-layer fetch while it generates (each new token fetched and released every layer,
    and the coordinator's trace stalled long generations); it generates what the plain model does, and the
    next training step runs on the re-registered hooks."""
    deepspeed = pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.partitioned_param_coordinator import PartitionedParameterCoordinator

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    student = load_causal_student(tiny_teacher_dir, fim=FIM)
    settings = {"loss": DistillationLoss(), "optimizer": None, "max_new_tokens": 8, "fim": FIM}
    reference = FIMDistiller(copy.deepcopy(student.model), student.tokenizer, **settings)
    module = FIMDistiller(student.model, student.tokenizer, **settings)
    prompt = student.tokenizer("<fim-prefix>local x = 1\n<fim-suffix>\n<fim-middle>")["input_ids"]
    inputs = {"input_ids": torch.tensor([prompt]), "labels": torch.tensor([[IGNORE_INDEX] * (len(prompt) - 1) + [0]])}
    config = {
        "train_batch_size": 1,
        "zero_optimization": {"stage": 3},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
    }
    fetches = []
    fetch = PartitionedParameterCoordinator.fetch_sub_module
    monkeypatch.setattr(
        PartitionedParameterCoordinator,
        "fetch_sub_module",
        lambda self, *a, **k: fetches.append(1) or fetch(self, *a, **k),
    )
    try:
        engine, *_ = deepspeed.initialize(model=module, model_parameters=module.parameters(), config=config)
        strategy = DeepSpeedStrategy(stage=3, cluster_environment=LightningEnvironment())
        strategy.model = engine
        module._trainer = SimpleNamespace(strategy=strategy)
        offload = engine.optimizer.parameter_offload
        hooks = len(offload.forward_hooks)
        engine.eval()
        fetches.clear()
        generated = module.generate(inputs)
        assert fetches == [] and len(offload.forward_hooks) == hooks
        assert generated == reference.eval().generate(inputs)
        engine.train()
        engine.backward(engine.module.model(input_ids=inputs["input_ids"], labels=inputs["input_ids"]).loss)
        engine.step()
        assert fetches  # the hooks are back: training gathers layer by layer again
    finally:
        torch.distributed.destroy_process_group()
        deepspeed.utils.groups._WORLD_GROUP = None
