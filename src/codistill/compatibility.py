"""Whether a run's loss, teacher source and student go together: checked once, from the config, before
any model loads (`check`), and the vocabularies once the tokenizers are at hand (`check_vocabularies`).
Each refusal is one line that names the fix (codistill.errors)."""

from hydra.utils import get_class, get_method
from omegaconf import DictConfig, OmegaConf

from codistill.backends.hf import HFBackend
from codistill.errors import ConfigError
from codistill.losses import DistillationLoss
from codistill.models.causal import CausalDistiller
from codistill.models.loading import load_causal_student


def exercises(cfg: DictConfig) -> bool:
    """Whether the run is recipe 2's (a causal student on exercises, in its own tokens)."""
    return issubclass(get_class(cfg.model._target_), CausalDistiller)


def local_teacher(cfg: DictConfig) -> bool:
    """Whether the teacher runs in this process (it can teach online and score the ground truth)."""
    return str(OmegaConf.select(cfg, "teacher.backend._target_", default="")).startswith(HFBackend.__module__)


def check(cfg: DictConfig, loss: DistillationLoss | None) -> None:
    """loss x teacher source x student kind x recipe, and what the recipe's inputs need."""
    recipe_2 = exercises(cfg)
    causal = recipe_2 or get_method(cfg.student._target_) is load_causal_student
    loss = loss or DistillationLoss()
    source = get_class(cfg.teacher_logits._target_) if cfg.get("teacher_logits") else None
    if recipe_2 and (loss.uses_rationale or loss.lmbda):
        raise ConfigError(
            "exercises have no rationale task and no on-policy sampling: set loss.alpha=1 and loss.lmbda=0"
        )
    if causal and not recipe_2 and not OmegaConf.select(cfg, "student.fim"):
        raise ConfigError("a causal student needs its FIM sentinels: set student.fim (see student=tiny_gpt_bigcode)")
    if causal and loss.uses_rationale:
        raise ConfigError(
            "a causal student learns no rationale task: set loss.alpha=1 (e.g. loss=label_only or loss=forward_kl)"
        )
    if loss.uses_rationale and not cfg.data.get("dataset_dir") and not cfg.get("rationale"):
        raise ConfigError(
            f"loss.alpha={loss.alpha} trains on rationales, but no rationale writer is chosen: add "
            "rationale=hf (a local model) or rationale=openai"
        )
    if loss.lmbda and not causal:
        raise ConfigError("loss.lmbda > 0 (on-policy GKD) needs a causal student that shares the teacher's tokenizer")
    if loss.hidden is not None and not causal:
        raise ConfigError(
            "loss.hidden pairs the student's hidden states with the teacher's position by position: it needs a "
            "causal student with the teacher's tokenizer (e.g. student=tiny_gpt_bigcode), or set loss.hidden=null"
        )
    if loss.hidden is not None and not (source is not None and source.online):
        raise ConfigError("loss.hidden reads the teacher's hidden states as it runs: set teacher_logits=online")
    if not loss.needs_teacher:
        return
    if source is None:
        raise ConfigError(
            f"loss.divergence={loss.divergence} reads the teacher's distribution: add teacher_logits=online "
            "or teacher_logits=offline"
        )
    if loss.matches_likelihoods and (recipe_2 or loss.lmbda):
        raise ConfigError(
            "loss=alm matches the likelihoods of a FIM label's chunks: it trains recipe 1's students off-policy "
            "(set loss.lmbda=0; for exercises use a token-wise loss)"
        )
    if loss.matches_likelihoods and not source.likelihoods:
        raise ConfigError(
            "loss=alm reads the teacher's likelihood of each of its tokens: use teacher_logits=online or "
            "teacher_logits=likelihoods (stored), not top-k or draws"
        )
    if not loss.matches_likelihoods and not source.distributions:
        raise ConfigError(
            f"loss.divergence={loss.divergence} reads the teacher's next-token distributions, which "
            "teacher_logits=likelihoods does not store: use teacher_logits=offline or online, or loss=alm"
        )
    if loss.lmbda and not source.online:
        raise ConfigError("loss.lmbda > 0 scores the student's own samples: it needs teacher_logits=online")
    if source.online and not local_teacher(cfg):
        raise ConfigError(
            "teacher_logits=online loads the teacher beside the student, but this teacher is served (no "
            "teacher.backend.name_or_path): use teacher_logits=offline, which stores its distributions first"
        )
    if source.forward_kl_only and (loss.divergence, loss.temperature) != ("forward_kl", 1.0):
        raise ConfigError(
            "teacher_logits=sampled estimates forward KL at temperature 1 only: set loss=forward_kl and "
            "loss.temperature=1, or use teacher_logits=offline (top-k) for this loss"
        )


def check_vocabularies(cfg: DictConfig, loss: DistillationLoss | None, student: dict[str, int], teacher) -> None:
    """A token-wise divergence needs the teacher's vocabulary to be the student's (`teacher`: a vocabulary,
    or None where the source does not know it); exercises are scored in the student's own tokens."""
    if loss is None or not loss.needs_teacher or teacher is None:
        return
    if exercises(cfg) and teacher != student:
        raise ConfigError(
            f"loss.divergence={loss.divergence} on exercises scores the student's own tokens with the "
            "teacher: use teacher_logits=online with a teacher that shares the student's tokenizer"
        )
    loss.check_vocabularies(student, teacher)
