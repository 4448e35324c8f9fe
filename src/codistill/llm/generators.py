"""Text generators behind one interface, `generate(prompts, store, desc) -> Generations` (text and finish
reason): an LLM API (OpenAI or compatible) or a local Hugging Face causal model. Both store every answer as
it arrives, so a killed run resumes without generating anything twice. `length_setting` names the setting,
under the generator's config node, that caps a reply's length: what to raise when replies are cut."""

from codistill.generation import generate_greedy, load_causal_lm
from codistill.llm.client import LLMClient, Request
from codistill.llm.generated import Generation
from codistill.llm.store import ResultStore, cached_map, content_key


class OpenAIGenerator:
    """Chat completions through the shared client (concurrency, rate limits, retries, cost)."""

    length_setting = "client.max_tokens"

    def __init__(self, client: LLMClient):
        self.client, self.model_name = client, client.model

    def key(self, prompt: str) -> str:
        return content_key("text", self.client.model, self.client.max_tokens, self.client.temperature, prompt)

    def generate(self, prompts: list[str], store: ResultStore, desc: str) -> list[Generation]:
        return self.client.results([Request(self.key(p), p) for p in prompts], store, desc)


class HFGenerator:
    """Greedy generation with a local causal model, `chunk_size` prompts at a time, each chunk stored;
    prompts longer than the context keep their most recent tokens. The offline default."""

    length_setting = "max_new_tokens"

    def __init__(
        self,
        name_or_path: str,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        chunk_size: int = 256,
        dtype: str = "auto",
        device: str = "auto",
    ):
        self.model_name = name_or_path
        self.max_new_tokens, self.batch_size, self.chunk_size = max_new_tokens, batch_size, chunk_size
        self.model, self.tokenizer = load_causal_lm(name_or_path, dtype, device)

    def key(self, prompt: str) -> str:
        return content_key("text", self.model_name, self.max_new_tokens, prompt)

    def generate(self, prompts: list[str], store: ResultStore, desc: str) -> list[Generation]:
        keys = [self.key(p) for p in prompts]
        return cached_map(store, keys, prompts, lambda batch: self._generate(batch, desc), self.chunk_size, desc)

    def _generate(self, prompts: list[str], desc: str) -> list[Generation]:
        stop = {self.tokenizer.eos_token_id}
        return generate_greedy(
            self.model, self.tokenizer, prompts, self.max_new_tokens, self.batch_size, stop, True, desc
        )
