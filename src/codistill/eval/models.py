"""Models under evaluation, behind one interface: left-to-right completion, fill-in-the-middle, and the
likelihood of a given middle (`middle_nll`: nats of the middle and its end, for bits per byte).

`CausalModel` is a teacher-style causal LM (santacoder, starcoder, the tiny GPTBigCode, a causal student)
behind any generation backend, filling middles through its own FIM sentinels; `Seq2SeqModel` wraps a
codistill student (a saved `student/` folder or any T5) and fills middles through the student's input format,
with the task prefixes it learnt; with `output_rationale` it also explains each middle, as Distilling
Step-by-Step's `--output_rationale`.
"""

import torch

from codistill.data.batching import right_padded
from codistill.data.fim import FIMTokens
from codistill.data.formatting import LABEL_TASK, RATIONALE_TASK, encode_fim_input
from codistill.errors import ConfigError
from codistill.generation import Sampling, cut_at_stop_strings, generate_ids, resolve_device, stop_ids
from codistill.losses import IGNORE_INDEX, sequence_nll
from codistill.models.loading import seq2seq_model
from codistill.models.tokenization import CodeTokenizer


class CausalModel:
    """A causal LM behind any generation backend: `complete` continues code left to right, `infill` fills
    a middle through the model's own FIM sentinels (`fim`; None: left to right only). A teacher's config
    is also an evaluated model's (name, backend, fim, eos_token)."""

    role, setting = "model", "eval_model"  # what errors call it, and the config node that sets it

    def __init__(
        self, name: str, backend, fim: dict | None = None, eos_token: str = "<|endoftext|>", output_rationale=False
    ):
        if output_rationale:
            raise ConfigError(
                f"model {name} is a causal LM without a rationale task: drop eval_model.output_rationale, "
                "or evaluate a step-by-step seq2seq student (eval_model=student)"
            )
        self.name, self.backend, self.eos_token = name, backend, eos_token
        self.fim = FIMTokens(**fim) if fim else None
        self.sentinels = (eos_token, *((self.fim.prefix, self.fim.suffix, self.fim.middle) if self.fim else ()))
        if backend.tokenizer is not None:  # a served model's tokenizer may be unknown
            stop_ids(
                backend.tokenizer,
                list(self.sentinels),
                f"{self.role} {name}",
                f"set {self.setting}.fim / {self.setting}.eos_token to the model's own FIM sentinels (santacoder: "
                "<fim-prefix>, starcoder: <fim_prefix>)",
            )

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    def complete(self, prompts: list[str], sampling: Sampling, stops: tuple[str, ...] = ()) -> list[list[str]]:
        return self._texts(self.backend.sample(prompts, sampling, (*self.sentinels, *stops), desc=self.name))

    def infill(self, prefixes: list[str], suffixes: list[str], sampling: Sampling) -> list[list[str]]:
        if self.fim is None:
            raise ConfigError(f"model {self.name} has no FIM tokens configured: set eval_model.fim to score infilling")
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        return self._texts(self.backend.sample(prompts, sampling, self.sentinels, desc=self.name))

    def middle_nll(self, prefixes: list[str], suffixes: list[str], middles: list[str]) -> list[float]:
        """Each middle's negative log-likelihood after its PSM prompt, its end-of-text included."""
        if self.fim is None:
            raise ConfigError(f"model {self.name} has no FIM tokens configured: set eval_model.fim to score infilling")
        prompts = [self.fim.psm(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        scores = self.backend.score(prompts, [m + self.sentinels[0] for m in middles], desc=f"{self.name} likelihood")
        return [-sum(s.logprobs) for s in scores]

    @staticmethod
    def _texts(samples) -> list[list[str]]:
        return [[g.text for g in generations] for generations in samples]


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
        model = seq2seq_model(name_or_path).to(resolve_device(device)).eval()
        return cls(model, CodeTokenizer.from_pretrained(name_or_path), **kwargs)

    def infill(self, prefixes: list[str], suffixes: list[str], sampling: Sampling) -> list[list[str]]:
        return self._generate(LABEL_TASK, prefixes, suffixes, sampling, ())

    def explain(self, prefixes: list[str], suffixes: list[str]) -> list[str]:
        """The student's rationale for each gap (greedy): its rationale task on the same context."""
        return [samples[0] for samples in self._generate(RATIONALE_TASK, prefixes, suffixes, Sampling(), ())]

    def complete(self, prompts: list[str], sampling: Sampling, stops: tuple[str, ...] = ()) -> list[list[str]]:
        """Left-to-right completion is infilling with an empty suffix."""
        return self._generate(LABEL_TASK, prompts, [""] * len(prompts), sampling, stops)

    @torch.no_grad()
    def middle_nll(self, prefixes: list[str], suffixes: list[str], middles: list[str]) -> list[float]:
        """Each middle's negative log-likelihood (its tokens and </s>) given the label task's input."""
        out = []
        device = next(self.model.parameters()).device
        for start in range(0, len(middles), self.batch_size):
            part = slice(start, start + self.batch_size)
            inputs = [
                encode_fim_input(self.tokenizer, LABEL_TASK, p, s, self.max_source_length)
                for p, s in zip(prefixes[part], suffixes[part], strict=True)
            ]
            ids, mask = right_padded(inputs, self.tokenizer.pad_token_id)
            padded, _ = right_padded([self.tokenizer(m)["input_ids"] for m in middles[part]], IGNORE_INDEX)
            logits = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                decoder_input_ids=self.model.prepare_decoder_input_ids_from_labels(labels=padded.to(device)),
            ).logits
            out += sequence_nll(logits, padded.to(device), shift=False).tolist()
        return out

    def _generate(self, task: str, prefixes, suffixes, sampling: Sampling, stops: tuple[str, ...]) -> list[list[str]]:
        inputs = [
            encode_fim_input(self.tokenizer, task, p, s, self.max_source_length)
            for p, s in zip(prefixes, suffixes, strict=True)
        ]
        stop_ids = {self.tokenizer.eos_token_id}
        out = generate_ids(
            self.model,
            inputs,
            self.tokenizer.pad_token_id,
            self.max_new_tokens,
            self.batch_size,
            stop_ids,
            sampling,
            stop_strings=stops,
            decode=self.tokenizer.decode,
        )
        return [[cut_at_stop_strings(self.tokenizer.decode(ids), stops) for ids in samples] for samples in out]
