"""The launch paths of GPU users, rehearsed on CPU: world size, ZeRO-3 and offload decisions, device
placement, torchrun launches of training and labelling, sweeps that follow the experiment."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.strategies import DeepSpeedStrategy

from codistill.apps.train import train
from codistill.config import CONFIG_DIR
from codistill.errors import ConfigError
from codistill.generation import resolve_device
from codistill.losses import IGNORE_INDEX, DistillationLoss
from codistill.models.accumulation import accumulation_steps
from codistill.models.export import on_evaluation_device
from codistill.models.fim import FIMDistiller
from codistill.models.loading import load_causal_student, load_student
from codistill.models.optim import build_optimizer, offloads_optimizer
from conftest import TINY_TEACHER, compose_config, free_port

FIM = {"prefix": "<fim-prefix>", "suffix": "<fim-suffix>", "middle": "<fim-middle>"}


@pytest.fixture
def eight_gpus(monkeypatch):
    """Lightning sees 8 CUDA devices (nothing runs on them: only the Trainer's arithmetic is used)."""
    import lightning_fabric.accelerators.cuda as fabric_cuda
    import pytorch_lightning.accelerators.cuda as pl_cuda

    for module in (fabric_cuda, pl_cuda):
        monkeypatch.setattr(module, "num_cuda_devices", lambda: 8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)


@pytest.mark.parametrize(
    "trainer_args, world",
    [
        ({"accelerator": "gpu", "devices": "auto"}, 8),
        ({"accelerator": "gpu", "devices": "auto", "num_nodes": 2, "strategy": "ddp"}, 16),
        ({"accelerator": "gpu", "devices": [0, 2, 5], "strategy": "ddp"}, 3),
        ({"accelerator": "gpu", "devices": 1}, 1),
    ],
)
def test_effective_batch_size_counts_every_process_the_trainer_resolves(eight_gpus, trainer_args, world):
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, **trainer_args)
    assert trainer.world_size == world
    if 128 % (4 * world) == 0:
        assert accumulation_steps(128, 4, trainer.world_size) * 4 * world == 128
    else:
        with pytest.raises(ConfigError, match="effective_batch_size=128 is not a multiple"):
            accumulation_steps(128, 4, trainer.world_size)


def test_effective_batch_size_sets_accumulation_in_a_real_training(tmp_path, cache_dir):
    def optimizer_steps(folder, effective):
        overrides = ["experiment=textbook_tiny", f"effective_batch_size={effective}", "data.micro_batch_size=2"]
        overrides += ["after_training={}", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1"]
        train(compose_config("train", tmp_path / folder, cache_dir, overrides))
        return torch.load(tmp_path / folder / "out" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]

    micro_batches = optimizer_steps("one", "null")
    assert micro_batches > 4 and optimizer_steps("four", 8) == -(-micro_batches // 4)  # 8 = 2 x 1 process x 4


@pytest.mark.parametrize("name", ["deepspeed_stage_2", "deepspeed_stage_3", "deepspeed_stage_3_offload"])
def test_only_the_offload_trainer_swaps_in_deepspeeds_cpu_adam(tmp_path, cache_dir, name):
    pytest.importorskip("deepspeed")
    cfg = compose_config("train", tmp_path, cache_dir, [f"trainer={name}"])
    strategy = instantiate(cfg.trainer.strategy)
    assert offloads_optimizer(strategy) == name.endswith("offload")
    factory = instantiate(cfg.model.optimizer)
    params = [torch.nn.Parameter(torch.ones(3))]
    if not offloads_optimizer(strategy):
        assert type(build_optimizer(factory, params, strategy)) is torch.optim.AdamW
    sgd = instantiate({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    if offloads_optimizer(strategy):
        with pytest.raises(ConfigError, match="model.optimizer=SGD cannot run under DeepSpeed's optimizer offload"):
            build_optimizer(sgd, params, strategy)


@pytest.mark.slow
def test_the_offload_optimizer_is_deepspeeds_cpu_adam_and_steps_like_adamw():
    """Builds DeepSpeed's CPU Adam (a JIT-compiled extension: about 2 minutes the first time)."""
    pytest.importorskip("deepspeed")
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    strategy = DeepSpeedStrategy(stage=3, offload_optimizer=True, offload_parameters=True)
    factory = instantiate({"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-2, "weight_decay": 0.01})
    torch.manual_seed(0)
    ours, reference = torch.nn.Parameter(torch.randn(64)), torch.nn.Parameter(torch.empty(64))
    reference.data.copy_(ours.data)
    optimizer, adamw = build_optimizer(factory, [ours], strategy), factory(params=[reference])
    assert isinstance(optimizer, DeepSpeedCPUAdam)
    for step in range(5):
        grad = torch.randn(64, generator=torch.Generator().manual_seed(step))
        ours.grad, reference.grad = grad.clone(), grad.clone()
        optimizer.step()
        adamw.step()
    assert torch.allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("student", ["seq2seq", "causal validation", "causal on-policy"])
def test_zero3_generation_steps_every_rank(tiny_student_dir, tiny_teacher_dir, student):
    """Under ZeRO-3 every forward pass is collective: a rank whose middles end early must keep stepping
    (`synced_gpus`) or the others wait until the collective timeout. The causal student's validation and
    GKD sampling passed nothing."""
    if student == "seq2seq":
        loaded = load_student(tiny_student_dir)
        inputs = loaded.tokenizer(["x = 1\n"], return_tensors="pt")
        inputs["labels"] = inputs["input_ids"]
    else:
        loaded = load_causal_student(tiny_teacher_dir, fim=FIM)
        ids = loaded.tokenizer("<fim-prefix>x = 1\n<fim-suffix>\n<fim-middle>y", return_tensors="pt")["input_ids"]
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[0, -1] = ids[0, -1]
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    loss = DistillationLoss("forward_kl", lmbda=1.0) if student.endswith("on-policy") else DistillationLoss()
    module = FIMDistiller(loaded.model, loaded.tokenizer, loss, optimizer=None, max_new_tokens=4, fim=loaded.fim)
    seen = {}
    generate = module.model.generate

    def recording(**kwargs):
        seen.update(kwargs)
        return generate(**{k: v for k, v in kwargs.items() if k != "synced_gpus"})

    module.model.generate = recording
    for stage, world, synced in [(3, 2, True), (3, 1, False), (2, 2, False)]:
        strategy = DeepSpeedStrategy(stage=stage, cluster_environment=LightningEnvironment())
        strategy.cluster_environment.set_world_size(world)
        module._trainer = SimpleNamespace(strategy=strategy)
        if student.endswith("on-policy"):
            module.on_policy({"label": inputs})
        else:
            module.generate(inputs)
        assert seen["synced_gpus"] is synced, (stage, world)


def test_after_training_evaluation_runs_on_this_ranks_accelerator(monkeypatch, tiny_student_dir):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda:3")  # torchrun's rank 3 uses GPU 3, not the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = load_student(tiny_student_dir).model.train()
    moved = on_evaluation_device(model)
    assert not moved.training and next(moved.parameters()).device == torch.device("cpu")


def test_a_real_experiment_must_name_its_data(tmp_path, cache_dir):
    cfg = compose_config("train", tmp_path, cache_dir, ["experiment=textbook_starcoder"])
    with pytest.raises(ConfigError, match=r"data.path not set .*add data.path=\.\.\. to the command"):
        train(cfg)  # before the 1B student is downloaded


def _hydra_node(overrides, part):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra[part], resolve=True)


@pytest.mark.parametrize("devices, count", [(4, 4), ("[0,1]", 2), ("'0,1,2'", 3)])
def test_the_slurm_launcher_asks_for_as_many_gpus_as_trainer_devices(devices, count):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = _hydra_node(["hydra/launcher=slurm", "trainer=ddp", f"trainer.devices={devices}"], "launcher")
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == count


def test_the_slurm_launcher_refuses_devices_auto():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with pytest.raises(Exception, match="set trainer.devices=N"):
        _hydra_node(["hydra/launcher=slurm", "trainer=ddp"], "launcher")


def _torchrun(tmp_path, cache_dir, app, *args):
    env = {**os.environ, "CODISTILL_ROOT": str(tmp_path), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += [
        "--master_port",
        str(free_port()),
        "-m",
        f"codistill.apps.{app}",
        *TINY_TEACHER,
        *args,
        f"paths.cache_dir={cache_dir}",
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def _store_records(store) -> dict[str, list[dict]]:
    return {
        w: [json.loads(x) for p in store.glob(f"part-{w}-*.jsonl") for x in p.read_text().splitlines()]
        for w in ("0", "1")
    }


def test_torchrun_training_with_no_cached_dataset_labels_once_in_shards_and_shares_one_run(tmp_path, cache_dir):
    """Two ranks of torchrun on CPU (gloo), the dataset not yet built: each rank labels half the segments,
    rank 0 assembles, both train. Each rank is pointed at its own run folder, as Hydra's clock can do
    across ranks: both must end in rank 0's."""
    runs = tmp_path / "outputs" / "train" / "runs"
    done = _torchrun(
        tmp_path,
        cache_dir,
        "train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "debug=fdr",
        f"hydra.run.dir={runs}/rank${{oc.env:RANK}}",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in runs.iterdir()) == ["rank0"]
    assert (runs / "rank0" / "student" / "config.json").is_file()
    (dataset,) = [p for p in (tmp_path / "data").iterdir() if p.name != "store"]
    records = _store_records(tmp_path / "data" / "store")
    assert records["0"] and records["1"]  # both ranks labelled ...
    assert not {r["key"] for r in records["0"]} & {r["key"] for r in records["1"]}  # ... different segments
    from datasets import load_from_disk

    summary = json.loads((runs / "rank0" / "metrics.json").read_text())
    assert summary["validation_rows"] == len(load_from_disk(str(dataset))["validation"])


@pytest.mark.thorough  # torchrun labels in shards in the training test too
def test_torchrun_labelling_in_shards_then_one_assembly(tmp_path, cache_dir):
    done = _torchrun(tmp_path, cache_dir, "generate", "debug=fdr")
    assert done.returncode == 0, done.stderr[-4000:]
    records = _store_records(tmp_path / "data" / "store")
    assert records["0"] and records["1"]
    env = {**os.environ, "CODISTILL_ROOT": str(tmp_path)}
    assemble = [sys.executable, "-m", "codistill.apps.generate", *TINY_TEACHER, "debug=fdr"]
    assemble.append(f"paths.cache_dir={cache_dir}")
    done = subprocess.run(assemble, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert _store_records(tmp_path / "data" / "store") == records  # the assembly computed nothing new
    (saved,) = (tmp_path / "outputs" / "generate" / "runs").glob("*/dataset/dataset_dict.json")
    assert saved.is_file()


def test_an_optuna_sweep_follows_the_experiments_metric_and_search_space(tmp_path, cache_dir):
    """Recipe 2 minimises val/loss and has no loss.alpha (recipe 1's sweep is in test_scaling)."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    env = {**os.environ, "CODISTILL_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    args = ["-m", "hparams_search=optuna", "experiment=textbook_tiny", "hydra.sweeper.n_trials=3", "debug=fdr"]
    command = [sys.executable, "-m", "codistill.apps.train", *args, "after_training={}", f"paths.cache_dir={cache_dir}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = list((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    results = (sweep / "optimization_results.yaml").read_text()
    assert "model.optimizer.lr" in results and "loss.alpha" not in results
    losses = [json.loads((sweep / j / "metrics.json").read_text())["metrics"]["val/loss"] for j in ("0", "1", "2")]
    assert len(set(losses)) == 3 and f"best_value: {min(losses)}" in results  # minimised, not maximised
