"""Models under evaluation, behind one interface: left-to-right completion and fill-in-the-middle.

`CausalModel` wraps a teacher-style causal LM (santacoder, starcoder, the tiny GPTBigCode) and fills
middles through its own FIM sentinels; `Seq2SeqModel` wraps a codistill student (a saved `student/`
folder or any T5) and fills middles through the student's input format, with the task prefixes it learnt;
with `output_rationale` it also explains each middle, as Distilling Step-by-Step's `--output_rationale`.
"""

from transformers import AutoModelForSeq2SeqLM

from codistill.data.fim import FIMTokens
from codistill.data.formatting import LABEL_TASK, RATIONALE_TASK, encode_fim_input
from codistill.errors import ConfigError
from codistill.generation import (
    Sampling,
    encode_prompts,
    generate_ids,
    load_causal_lm,
    pad_id_of,
    resolve_device,
    stop_ids,
)
from codistill.models.tokenization import CodeTokenizer


def cut_at_stop_strings(text: str, stops: tuple[str, ...]) -> str:
    """`text` up to the earliest occurrence of any stop string."""
    return text[: min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))]


class CausalModel:
    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        fim: dict | None = None,
        eos_token: str = "<|endoftext|>",
        max_new_tokens: int = 256,
        batch_size: int = 8,
    ):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.fim = FIMTokens(**fim) if fim else None
        sentinels = [eos_token, *([self.fim.prefix, self.fim.suffix, self.fim.middle] if self.fim else [])]
        self.stop_ids = stop_ids(tokenizer, sentinels, f"model {name}", "set eval_model.fim / eval_model.eos_token")

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        name_or_path: str,
        dtype: str = "auto",
        device: str = "auto",
        output_rationale: bool = False,
        **kwargs,
    ):
        if output_rationale:  # checked before a large model loads for nothing
            raise ConfigError(
                f"model {name} is a causal LM without a rationale task: drop eval_model.output_rationale, "
                "or evaluate a step-by-step seq2seq student (eval_model=student)"
            )
        model, tokenizer = load_causal_lm(name_or_path, dtype, device)
        return cls(model, tokenizer, name, **kwargs)

    def _generate(self, prompts: list[str], sampling: Sampling, stops: tuple[str, ...]) -> list[list[str]]:
        inputs = encode_prompts(self.model, self.tokenizer, prompts, self.max_new_tokens, truncate_left=True)
        out = generate_ids(
            self.model, inputs, pad_id_of(self.tokenizer), self.max_new_tokens, self.batch_size, self.stop_ids, sampling
        )
        return [[cut_at_stop_strings(self.tokenizer.decode(ids), stops) for ids in samples] for samples in out]

    def complete(self, prompts: list[str], sampling: Sampling, stops: tuple[str, ...] = ()) -> list[list[str]]:
        return self._generate(prompts, sampling, stops)

    def infill(self, prefixes: list[str], suffixes: list[str], sampling: Sampling) -> list[list[str]]:
        if self.fim is None:
            raise ConfigError(f"model {self.name} has no FIM tokens configured: set eval_model.fim to score infilling")
        return self._generate([self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)], sampling, ())


class Seq2SeqModel:
    def __init__(
        self,
        model,
        tokenizer: CodeTokenizer,
        name: str = "student",
        max_source_length: int = 512,
        max_new_tokens: int = 256,
        batch_size: int = 16,
        output_rationale: bool = False,
    ):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_source_length, self.max_new_tokens, self.batch_size = max_source_length, max_new_tokens, batch_size
        self.output_rationale = output_rationale

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "auto", **kwargs) -> "Seq2SeqModel":
        """A saved student: its tokenizer brings the task prefixes the student learnt."""
        model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path).to(resolve_device(device)).eval()
        return cls(model, CodeTokenizer.from_pretrained(name_or_path), **kwargs)

    def infill(self, prefixes: list[str], suffixes: list[str], sampling: Sampling) -> list[list[str]]:
        return self._generate(LABEL_TASK, prefixes, suffixes, sampling, ())

    def explain(self, prefixes: list[str], suffixes: list[str]) -> list[str]:
        """The student's rationale for each gap (greedy): its rationale task on the same context."""
        return [samples[0] for samples in self._generate(RATIONALE_TASK, prefixes, suffixes, Sampling(), ())]

    def complete(self, prompts: list[str], sampling: Sampling, stops: tuple[str, ...] = ()) -> list[list[str]]:
        """Left-to-right completion is infilling with an empty suffix."""
        return self._generate(LABEL_TASK, prompts, [""] * len(prompts), sampling, stops)

    def _generate(self, task: str, prefixes, suffixes, sampling: Sampling, stops: tuple[str, ...]) -> list[list[str]]:
        inputs = [
            encode_fim_input(self.tokenizer, task, p, s, self.max_source_length)
            for p, s in zip(prefixes, suffixes, strict=True)
        ]
        stop_ids = {self.tokenizer.eos_token_id}
        out = generate_ids(
            self.model, inputs, self.tokenizer.pad_token_id, self.max_new_tokens, self.batch_size, stop_ids, sampling
        )
        return [[cut_at_stop_strings(self.tokenizer.decode(ids), stops) for ids in samples] for samples in out]
