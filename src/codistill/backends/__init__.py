"""Generation backends: one interface for every stage that asks a model for text (the FIM teacher,
rationales, exercises, evaluated models).

A backend has `name` (the model id records carry), `tokenizer` (None when a server's tokenizer is not
given), `context_length`, `max_new_tokens` (its token budget, from its own config: `length_setting` names
that key) and two methods:

- `generate(prompts, stops, store, namespace, chat, truncate_left, desc) -> list[Generation]`: greedy,
  each result stored in the `ResultStore` as it arrives when a store is given, keyed by
  (namespace, model, budget, prompt), so a killed run resumes and nothing is paid for twice;
- `sample(prompts, sampling, stops, chat, desc) -> list[list[Generation]]`: `sampling.n` samples per
  prompt (evaluation), not stored.

`stops` are strings; generation ends at the first one (not included). `chat` sends an instruction as a
chat message where the backend has a chat API. Adding a backend is one class here and one config in
`conf/backend/`.
"""
