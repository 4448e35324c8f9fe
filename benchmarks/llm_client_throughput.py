"""Requests per second of codistill's LLM client against a server with a fixed 200 ms latency.

The server (tests/openai_server.py) runs in its own process. At concurrency c the ideal is c / latency
requests per second; the table prints the measured rate and its ratio to that ideal (target >= 0.8).
Every answer goes through the durable ResultStore, as in a real generation run. `--quick`: 50 ms, concurrency
1 and 8, 16 requests each: that the client runs and answers every request.

    python benchmarks/llm_client_throughput.py [--latency 0.2] [--concurrency 1 8 32 64] [--quick]
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from codistill.llm.client import LLMClient, Request  # noqa: E402
from codistill.llm.store import ResultStore, content_key  # noqa: E402
from openai_server import FakeOpenAI  # noqa: E402


def measure(base_url: str, concurrency: int, n: int) -> tuple[int, float]:
    """The requests answered, and how many a second."""
    client = LLMClient("bench", base_url=base_url, max_concurrency=concurrency, timeout=30, max_tokens=16)
    requests = [Request(content_key("bench", concurrency, i), f"benchmark prompt {concurrency} {i}") for i in range(n)]
    with tempfile.TemporaryDirectory() as folder, ResultStore(folder) as store:
        stats = client.run(requests, store, f"c={concurrency}")
    assert stats.done == n and stats.failed == 0
    return stats.done, n / stats.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rounds", type=int, default=16, help="requests per concurrency slot")
    parser.add_argument("--quick", action="store_true", help="50 ms, concurrency 1 and 8, 16 requests each")
    args = parser.parse_args()
    if args.quick:
        args.latency, args.concurrency, args.rounds = 0.05, [1, 8], 2
    rows = []
    with FakeOpenAI(latency=args.latency, process=True) as server:
        measure(server.base_url, 4, 8)  # warm-up: imports, connection pool
        for c in args.concurrency:
            answered, rate = measure(server.base_url, c, max(c * args.rounds, 16))
            rows.append((c, answered, rate, c / args.latency))
    print(f"\nfixed server latency {args.latency * 1000:.0f} ms, {args.rounds} requests per concurrency slot\n")
    print("| concurrency | answered | requests/s | ideal (c / latency) | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for c, answered, rate, ideal in rows:
        print(f"| {c} | {answered} | {rate:.1f} | {ideal:.1f} | {rate / ideal:.2f} |")


if __name__ == "__main__":
    main()
