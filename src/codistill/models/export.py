"""The trained student as a plain `save_pretrained` folder, whatever strategy trained it."""

import tempfile
from pathlib import Path

from pytorch_lightning.strategies import DeepSpeedStrategy
from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict
from transformers import PreTrainedModel

from codistill.generation import resolve_device

MODEL_PREFIX = "model."  # the LightningModule attribute that holds the Hugging Face model


def trained_model(module, checkpoint: str, strategy) -> PreTrainedModel:
    """The student with its trained weights in full. Under DeepSpeed a checkpoint is a folder of ZeRO
    shards (under ZeRO-3 the module's own parameters are partitioned): they are merged into one fp32
    state dict, and its model weights (not the module's other state, such as buffers of counters)
    are loaded into a fresh copy of the model."""
    if not (isinstance(strategy, DeepSpeedStrategy) and checkpoint and Path(checkpoint).is_dir()):
        return module.model
    with tempfile.TemporaryDirectory() as tmp:
        merged = convert_zero_checkpoint_to_fp32_state_dict(checkpoint, f"{tmp}/fp32.ckpt")
    weights = {k.removeprefix(MODEL_PREFIX): v for k, v in merged["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    model = type(module.model)._from_config(module.model.config)
    model.load_state_dict(weights)
    return model


def save_student(model: PreTrainedModel, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def on_evaluation_device(model: PreTrainedModel) -> PreTrainedModel:
    """The model in eval mode on this process's accelerator: after `trainer.validate` Lightning's
    teardown has moved it to the CPU, where generation on a 1B model would take hours."""
    return model.to(resolve_device("auto")).eval()
