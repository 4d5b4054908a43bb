"""`ocs client call` / `ocs client balance` against a live server (in-memory handler)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from ocs.diameter import DiameterServer
from ocs.diameter.cli_client import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, add_commands
from ocs.diameter.memory import MemoryHandler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ocs")
    add_commands(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture
async def server() -> AsyncIterator[DiameterServer]:
    handler = MemoryHandler(balances={"5173": 203_800, "1001": 5_000})
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="localdomain")
    await srv.start()
    yield srv
    await srv.stop(grace=0.2)


async def run(srv: DiameterServer, *argv: str) -> int:
    args = parser().parse_args([*argv, "--port", str(srv.bound_port), "--host", "127.0.0.1"])
    code: int = await asyncio.to_thread(args.func, args)
    return code


async def test_call_prints_each_grant_and_the_cost(server: DiameterServer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = await run(server, "client", "call", "--from", "5173", "--to", "0141587070",
                     "--duration", "65", "--update-every", "30")
    out = capsys.readouterr().out.splitlines()
    assert code == EXIT_OK
    assert [line.split(":")[0] for line in out[:4]] == ["CCR-I", "CCR-U", "CCR-U", "CCR-T"]
    assert "granted 30 s" in out[0] and "balance 203800 u (20.3800 EUR)" in out[0]
    # the brochure: 65 s at 200 u/s = 13000 units; 203800 - 13000 = 190800
    assert out[-1] == ("call ended after 65 s; cost 13000 u (1.3000 EUR); "
                       "remaining 190800 u (19.0800 EUR)")


async def test_call_cut_on_final_units_without_mscc(server: DiameterServer,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = await run(server, "client", "call", "--from", "1001", "--to", "0141587070",
                     "--duration", "65", "--update-every", "10", "--no-mscc")
    out = capsys.readouterr().out
    assert code == EXIT_REFUSED
    assert "final units: TERMINATE" in out
    assert "call cut by the OCS after 25 s" in out


async def test_balance_json(server: DiameterServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(server, "client", "balance", "--account", "5173", "--json") == EXIT_OK
    line = json.loads(capsys.readouterr().out)
    assert line == {"step": "CCR-E", "result_code": 2001, "granted": None,
                    "remaining_balance": 203800, "cost": None}
    assert await run(server, "client", "balance", "--from", "0999") == EXIT_REFUSED


async def test_refused_and_unreachable_are_clean_errors(
        server: DiameterServer, capsys: pytest.CaptureFixture[str]) -> None:
    strict = DiameterServer(MemoryHandler(), host="127.0.0.1", port=0, origin_host="o",
                            realm="r", allowed_peers=["someone.else"])
    await strict.start()
    try:
        assert await run(strict, "client", "balance", "--account", "1") == EXIT_ERROR
        assert "refused us at CER (Result-Code 3010)" in capsys.readouterr().err
    finally:
        await strict.stop(grace=0.1)
    args = parser().parse_args(["client", "balance", "--account", "1", "--port", "1",
                                "--host", "127.0.0.1"])
    assert await asyncio.to_thread(args.func, args) == EXIT_ERROR
    assert "error" in capsys.readouterr().err
