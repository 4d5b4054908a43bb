"""Baseline Gy server: a stock python-diameter `Node` answering every CCR with a fixed CCA.

Why this exists: it is the reference point for `bench/gy_load.py` — what the library's own
thread/select node and generic codec achieve with no charging at all — so our asyncio
server's numbers can be read as a ratio against it (DESIGN.md measured ~1,100 CCR/s).

    python bench/node_baseline.py --port 3869 --peers load0.bench,load1.bench
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from diameter.message.avp.grouped import GrantedServiceUnit, MultipleServicesCreditControl
from diameter.message.constants import APP_DIAMETER_CREDIT_CONTROL_APPLICATION
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication


def answer(app: Any, msg: Any) -> Any:
    cca = app.generate_answer(msg)
    cca.result_code = 2001
    cca.auth_application_id = 4
    cca.cc_request_type = msg.cc_request_type
    cca.cc_request_number = msg.cc_request_number
    if msg.cc_request_type != 3:
        cca.multiple_services_credit_control = [MultipleServicesCreditControl(
            granted_service_unit=GrantedServiceUnit(cc_time=30), rating_group=100,
            validity_time=60, result_code=2001)]
    return cca


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3869)
    ap.add_argument("--origin-host", default="baseline.bench")
    ap.add_argument("--realm", default="bench")
    ap.add_argument("--peers", default="load0.bench",
                    help="comma-separated Origin-Hosts allowed to connect")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    node = Node(args.origin_host, args.realm, ip_addresses=[args.host], tcp_port=args.port,
                vendor_ids=[10415])
    node.idle_timeout = 30
    peers = [node.add_peer(f"aaa://{p}", args.realm) for p in args.peers.split(",") if p]
    app = SimpleThreadingApplication(APP_DIAMETER_CREDIT_CONTROL_APPLICATION,
                                     is_auth_application=True, request_handler=answer)
    node.add_application(app, peers)
    node.start()
    print(f"listening on {args.host}:{args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    node.stop(1, force=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
