"""What every FIM teacher shares: its sentinels, a tokenizer for token-length segments, a context."""

from codistill.data.fim import FIMTokens
from codistill.errors import ConfigError


class FIMTeacher:
    name: str
    fim: FIMTokens
    max_new_tokens: int
    context_length: int

    def check_segment_length(self, tokens: int) -> None:
        """Fail early when segments of `tokens` tokens cannot fit with the generated middle."""
        room = self.context_length - self.max_new_tokens - 8  # the sentinels and BPE merges at the cuts
        if tokens > room:
            raise ConfigError(
                f"dataset.segment.length={tokens} tokens does not fit the teacher's context: {self.name} has "
                f"{self.context_length} positions and generates up to teacher.max_new_tokens={self.max_new_tokens}; "
                f"set dataset.segment.length <= {room}"
            )
