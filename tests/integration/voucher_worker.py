"""A separate OS process redeeming voucher codes (tests/integration/test_voucher_processes.py).

argv: start_at (epoch seconds) account_number code... ; env: OCS_DATA_DIR, OCS_DATABASE_URL.
Waits until start_at so that both processes hit the database at the same moment, then
redeems every code in order. Prints one JSON line: which serials it got and which it lost.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from ocs import vouchers
from ocs.config import load_settings
from ocs.db import close_db, init_db


async def main(start_at: float, account: str, codes: list[str]) -> None:
    await init_db(load_settings())
    try:
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        won: list[str] = []
        lost = 0
        for code in codes:
            try:
                got = await vouchers.redeem(code, account, actor=f"proc-{account}")
            except vouchers.VoucherUsed:
                lost += 1
            else:
                won.append(got.serial)
        print(json.dumps({"won": won, "lost": lost}))
    finally:
        await close_db()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), sys.argv[2], sys.argv[3:]))
