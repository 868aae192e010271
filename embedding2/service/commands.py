"""The ``embedding2 serve`` subcommand (registered into the main CLI by ``embedding2.cli``).

Every flag has an ``EMBEDDING2_*`` environment variable of the same name (``--data-dir`` ->
``EMBEDDING2_DATA_DIR``, ``--no-auth`` -> ``EMBEDDING2_NO_AUTH=1``, ``--threads`` ->
``EMBEDDING2_THREADS`` ...); a flag given on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from embedding2.cli import _engine_args, settings_from_args
from embedding2.service.config import load_service_settings


def cmd_serve(args: argparse.Namespace) -> int:
    from embedding2.service.server import serve

    service = load_service_settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        no_auth=args.no_auth,
        max_body_bytes=args.max_body_bytes,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after its graceful shutdown
        serve(service, settings_from_args(args))
    return 0


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``embedding2`` command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the HTTP API (Zhipu /api/paas/v4/embeddings and OpenAI /v1/embeddings)",
        description="Serve the Embedding-2 HTTP API. Ready when GET /ready answers 200. "
        "Each flag can also be set by the EMBEDDING2_<FLAG> environment variable.",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; EMBEDDING2_HOST)")
    p.add_argument("--port", type=int, help="port (default 8000; EMBEDDING2_PORT)")
    p.add_argument("--data-dir", type=Path, help="accounts, keys, usage ledger, master key (EMBEDDING2_DATA_DIR)")
    p.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="no API keys: every request acts as the built-in 'local' account (EMBEDDING2_NO_AUTH=1)",
    )
    p.add_argument("--max-body-bytes", type=int, help="largest request body (default 2 MiB)")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", default=None, help="one log line per request")
    _engine_args(p)
    p.set_defaults(func=cmd_serve)
