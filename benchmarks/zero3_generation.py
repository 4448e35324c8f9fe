"""Generation under DeepSpeed ZeRO-3: token by token through DeepSpeed's per-layer hooks, against the student's
weights gathered once (`codistill.distributed.whole_model`, what validation and GKD sampling do).

DeepSpeed's engine on CPU (gloo, one rank), the default run's student shape (GPTBigCode, 64 wide, 2 layers,
4,096 tokens). `--rounds` rounds of one training step then one greedy generation of `--new-tokens` tokens for
a batch of prompts, each arm in a fresh engine; the seconds of each round's generation. Through the hooks,
each new token's forward fetches and releases every layer's weights and the parameter coordinator walks the
trace it recorded; gathered, a round costs what plain `generate` does.

    python benchmarks/zero3_generation.py [--rounds 4] [--new-tokens 64] [--threads 2] [--quick]
"""

import argparse
import copy
import os
import socket
import time

import torch
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.strategies import DeepSpeedStrategy
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

from codistill.distributed import whole_model
from codistill.tables import print_table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rounds_seconds(model, prompts, rounds: int, new_tokens: int, gathered: bool) -> list[float]:
    import deepspeed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    config = {
        "train_batch_size": len(prompts),
        "zero_optimization": {"stage": 3},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
    }
    seconds = []
    try:
        engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
        strategy = DeepSpeedStrategy(stage=3, cluster_environment=LightningEnvironment())
        strategy.model = engine
        for _ in range(rounds):
            engine.train()
            engine.backward(engine(input_ids=prompts, labels=prompts).loss)
            engine.step()
            engine.eval()
            started = time.perf_counter()
            settings = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
            with torch.no_grad():
                if gathered:
                    with whole_model(strategy, model):
                        model.generate(prompts, **settings)
                else:
                    model.generate(prompts, synced_gpus=True, **settings)
            seconds.append(time.perf_counter() - started)
    finally:
        torch.distributed.destroy_process_group()
        deepspeed.utils.groups._WORLD_GROUP = None  # DeepSpeed caches the destroyed group for the next engine
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 8 tokens")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.new_tokens = 2, 8
    torch.set_num_threads(args.threads)
    config = GPTBigCodeConfig(vocab_size=4096, n_positions=512, n_embd=64, n_layer=2, n_head=4, multi_query=True)
    torch.manual_seed(0)
    base = GPTBigCodeForCausalLM(config)
    base.generation_config.pad_token_id = 0
    prompts = torch.randint(5, 4096, (args.batch, 48))
    rows = {}
    for arm, gathered in (("through the hooks", False), ("gathered once", True)):
        seconds = rounds_seconds(copy.deepcopy(base), prompts, args.rounds, args.new_tokens, gathered)
        rows[arm] = {f"round {i + 1} s": s for i, s in enumerate(seconds)} | {"total s": sum(seconds)}
    print_table(f"ZeRO-3 generation on CPU, {args.batch} x {args.new_tokens} new tokens a round", rows)


if __name__ == "__main__":
    main()
