"""Exec round trip of `true` from Python: p50/p90/p99 over N runs on one sandbox, to put
beside Rust's figure (local-process: `cargo run --release -p
sandkit-provider-local-process --example exec_latency`).

    python crates/python/bench/exec_roundtrip.py [--provider local-process] [-n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import sandkit


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", default="local-process")
    parser.add_argument("--image", default=None)
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    provider = await sandkit.open(args.provider)
    async with await provider.create(image=args.image, lifetime_secs=600) as sandbox:
        for _ in range(10):
            await sandbox.exec(["true"])
        samples = []
        for _ in range(args.n):
            started = time.perf_counter()
            await sandbox.exec(["true"])
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    quantiles = statistics.quantiles(samples, n=100)
    print(
        f"{args.provider}: exec `true` round trip from Python over {args.n} runs: "
        f"p50 {statistics.median(samples):.2f} ms, p90 {quantiles[89]:.2f} ms, p99 {quantiles[98]:.2f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
