"""A separate OS process hammering one account with reserve/settle (used by the tests and
bench/ledger_concurrency.py). Prints one JSON line: what it debited and how long it took."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from ocs import ledger


async def main(
    url: str, account_id: int, sessions: int, rounds: int, strategy: str, tag: str
) -> None:
    store = await ledger.open_store(url)
    strat = ledger.Strategy(strategy)
    debited = 0
    refused = 0

    async def session(i: int) -> None:
        nonlocal debited, refused
        for r in range(rounds):
            got = await store.run(ledger.reserve(account_id, 500, 1, strat))
            if got is None:
                refused += 1
                continue
            await asyncio.sleep(0)
            cost = min(got.taken, 100 + (i * 7 + r) % 400)
            s = await store.run(
                ledger.settle(
                    account_id, got.taken, cost, reference=f"{tag}-{i}-{r}", strategy=strat
                )
            )
            debited += s.debited

    started = time.perf_counter()
    await asyncio.gather(*(session(i) for i in range(sessions)))
    elapsed = time.perf_counter() - started
    await store.close()
    print(
        json.dumps(
            {
                "debited": debited,
                "refused": refused,
                "seconds": elapsed,
                "ops": sessions * rounds * 2,
            }
        )
    )


if __name__ == "__main__":
    url, aid, n, rounds, strategy, tag = sys.argv[1:7]
    asyncio.run(main(url, int(aid), int(n), int(rounds), strategy, tag))
