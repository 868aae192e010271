"""Child process of the durability tests: records usage rows from 64 concurrent streams and prints each
request_id only after record() returned (an acknowledged request), until it is killed.

usage: ledger_child.py DATA_DIR FULL|NORMAL COMMIT_INTERVAL_MS KEY  (EMBEDDING2_DATABASE_URL picks the store)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from embedding2.accounts import Accounts, AccountsSettings, UsageRecord


async def main(argv: list[str]) -> None:
    data_dir = Path(argv[0])
    settings = AccountsSettings(
        data_dir=data_dir,
        sqlite_synchronous=argv[1],
        ledger_commit_interval_ms=float(argv[2]),
    )
    acc = Accounts.open(data_dir, settings)
    p = acc.authenticate(argv[3])

    async def client(c: int) -> None:  # one of 64 concurrent request streams
        for i in range(1_000_000):
            rid = f"req-{c}-{i}"
            await acc.record(UsageRecord(rid, p.account_id, p.key_id, "embedding-2", 7 + i % 50))
            sys.stdout.write(rid + "\n")  # acknowledged: the response would be sent now
            sys.stdout.flush()

    await asyncio.gather(*(client(c) for c in range(64)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
