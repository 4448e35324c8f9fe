"""Rationales from the OpenAI API or any OpenAI-compatible server (vLLM, TGI, llama.cpp)."""

import asyncio
import os

from openai import AsyncOpenAI
from tqdm.auto import tqdm

from codistill.errors import ConfigError
from codistill.rationales.template import PromptTemplate


class OpenAIRationale:
    """Chat completions with bounded concurrency; the client retries 429/5xx/timeouts with backoff.

    The key is read from the environment variable `api_key_env` only, never from the config.
    """

    def __init__(
        self,
        model: str,
        template: dict,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout: float = 60.0,
        max_retries: int = 5,
    ):
        self.model_name, self.template = model, PromptTemplate(**template)
        self.base_url, self.max_concurrency = base_url, max_concurrency
        self.max_tokens, self.temperature = max_tokens, temperature
        self.timeout, self.max_retries = timeout, max_retries
        self._api_key = os.environ.get(api_key_env)
        if not self._api_key:
            if base_url is None:
                raise ConfigError(
                    f"rationale=openai needs an API key in the environment variable {api_key_env}: export it, "
                    "set rationale.base_url to a local OpenAI-compatible server, or use rationale=hf offline"
                )
            self._api_key = "EMPTY"  # local servers ignore the key, the client insists on one

    def explain(self, language: str, codes: list[str], middles: list[str]) -> list[str]:
        prompts = [self.template.render(language, c, m) for c, m in zip(codes, middles, strict=True)]
        return asyncio.run(self._explain_all(prompts))

    async def _explain_all(self, prompts: list[str]) -> list[str]:
        client = AsyncOpenAI(
            api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=self.max_retries
        )
        limit = asyncio.Semaphore(self.max_concurrency)
        bar = tqdm(total=len(prompts), desc=f"rationales {self.model_name}", unit="req", leave=False)

        async def one(prompt: str) -> str:
            async with limit:
                reply = await client.chat.completions.create(
                    model=self.model_name,
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                )
            bar.update()
            return reply.choices[0].message.content or ""

        try:
            return await asyncio.gather(*(one(p) for p in prompts))
        finally:
            bar.close()
            await client.close()
