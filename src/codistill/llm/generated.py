"""One generated text and why it ended: a reply cut at the token limit is unfinished (an exercise without
its solution, a rationale without its point), so every generator says which replies were cut."""

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

LENGTH = "length"  # OpenAI's finish_reason for a reply cut at max_tokens; ours for HF's max_new_tokens


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str | None = None  # "stop", "length", ...; None: unknown (a record of an older run)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == LENGTH

    @classmethod
    def from_record(cls, record: dict) -> "Generation":
        """The generation a `ResultStore` record holds (records written before finish reasons: None)."""
        return cls(record["result"], record.get("finish_reason"))


def warn_truncated(generations: list[Generation], what: str, setting: str) -> None:
    """Log how many replies were cut, naming `setting` (the config key that caps reply length), when any were."""
    count = sum(g.truncated for g in generations)
    if count:
        log.warning(
            "%d of %d %s replies were cut at the token limit (finish_reason 'length'): raise %s",
            count,
            len(generations),
            what,
            setting,
        )
