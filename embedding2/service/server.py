"""Running the service: open the engine and the accounts, announce the admin key once, serve with uvicorn.

One process, one event loop (uvloop and httptools when installed), one engine. Shutdown on SIGTERM or
SIGINT is uvicorn's graceful one: stop accepting, let the requests in flight finish (at most
``graceful_timeout_s``), then the app's lifespan hook flushes the usage ledger and closes the store and
the engine (see ``app.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

import uvicorn

from embedding2.accounts import Accounts, AccountsError, AccountsSettings, Principal
from embedding2.engine.embedder import Embedder
from embedding2.models.registry import SERVED_MODELS
from embedding2.service.admission import refusing_protocol
from embedding2.service.app import create_app
from embedding2.service.config import ServiceSettings
from embedding2.service.metrics import ServiceMetrics
from embedding2.service.routes import EMBEDDINGS_PATHS
from embedding2.service.state import Readiness, ServiceState
from embedding2.settings import Settings

log = logging.getLogger(__name__)

LOCAL_ACCOUNT = "local"
LOCAL_KEY_ID = "local"


def local_principal(accounts: Accounts) -> Principal:
    """The built-in account every request acts as under ``--no-auth`` (created on first use with the
    highest tier; its tier, quota and balance can be changed like any account's)."""
    try:
        row = accounts.get_account(LOCAL_ACCOUNT)
    except AccountsError:
        limits = accounts.settings.tier_limits
        tier = max(limits, key=lambda t: limits[t])
        row = accounts.ensure_account(LOCAL_ACCOUNT, tier)
    return Principal(
        account_id=row.id,
        account_name=row.name,
        key_id=LOCAL_KEY_ID,
        tier=row.tier,
        concurrency=accounts.tier_limit(row.tier),
    )


def load_engine(engine: Settings, metrics: ServiceMetrics, nice: int) -> Embedder:
    """The Embedder, created in a thread whose nice value is raised by ``nice``.

    On Linux a nice value belongs to a thread and new threads inherit their creator's, so the inference
    threads (the batcher and ONNX Runtime's pool) run below the event loop's priority while the loop,
    its worker threads (tokenizing, encoding) and the ledger writer keep the default.
    """
    box: list[Embedder] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            if nice and sys.platform.startswith("linux"):  # elsewhere nice applies to the whole process
                with contextlib.suppress(OSError):
                    os.nice(nice)
            box.append(Embedder(settings=engine, on_batch=metrics.on_batch))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=create, name="embedding2-engine-loader")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def warm_up(embedder: Embedder) -> None:
    """One request per served id and dimension, so that the first clients do not pay for first-use work
    (the ONNX session's first runs, the dimension adapter's matrices)."""
    for served in SERVED_MODELS.values():
        for dims in served.dimensions:
            embedder.embed(["warm-up"], model=served.id, dimensions=dims)


def _loop_and_http() -> tuple[str, str]:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    return loop, http


def build_state(
    service: ServiceSettings,
    engine: Settings,
    accounts_settings: AccountsSettings | None = None,
    *,
    out: TextIO = sys.stderr,
) -> ServiceState:
    """Open the accounts store and the engine; print the admin key on a first start."""
    accounts_settings = accounts_settings or AccountsSettings(data_dir=service.data_dir)
    accounts = Accounts.open(service.data_dir, accounts_settings)
    try:
        admin_key = accounts.ensure_admin()
        if admin_key is not None:  # at once: the key is never shown again, even if the engine fails to load
            _announce_admin_key(admin_key, service, out)
        principal = local_principal(accounts) if service.no_auth else None
        metrics = ServiceMetrics()
        embedder = load_engine(engine, metrics, service.engine_nice)
    except BaseException:
        accounts.close()
        raise
    try:
        warm_up(embedder)
    except BaseException:
        embedder.close()
        accounts.close()
        raise
    metrics.bind_engine(lambda: embedder.scheduler.queue_depth, lambda: embedder.scheduler.queued_tokens)
    if service.no_auth:
        print(
            "embedding2: WARNING: --no-auth is ON: every request, from anyone who can reach "
            f"{service.host}:{service.port}, acts as account {LOCAL_ACCOUNT!r} "
            f"(tier {principal.tier if principal else '?'}, still limited and ledgered)",
            file=out,
            flush=True,
        )
    readiness = Readiness(embedder, cache_s=service.ready_cache_s, timeout_s=service.ready_timeout_s)
    return ServiceState(service, embedder, accounts, metrics, readiness, local_principal=principal)


def _announce_admin_key(key: str, service: ServiceSettings, out: TextIO) -> None:
    rule = "=" * 72
    print(
        f"{rule}\n"
        "embedding2: first start: created account 'admin' and its API key (shown ONCE, store it now):\n\n"
        f"    EMBEDDING2_ADMIN_KEY={key}\n\n"
        "Make more keys with:\n"
        f"    embedding2 keys create --data-dir {service.data_dir} --account NAME --tier V0\n"
        f"{rule}",
        file=out,
        flush=True,
    )


def freeze_startup_heap() -> None:
    """Move every object that exists after start-up out of the garbage collector's sight.

    The loaded engine, the tokenizers and the imported libraries leave a heap whose full (oldest
    generation) collection takes ~40 ms on a 2-core machine, and under load Python runs one every few
    seconds: an event-loop stall that every request in flight, refusals included, waits out. Nothing in
    that heap becomes garbage while serving, so it is frozen (as vLLM's API server does); collections
    then only look at objects made by requests.
    """
    gc.collect()
    gc.freeze()


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM only trigger the graceful shutdown.

    uvicorn re-raises the captured signal once it has shut down, which turns Ctrl-C into a
    KeyboardInterrupt traceback after a clean stop; here the process simply returns.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(service: ServiceSettings, engine: Settings, accounts_settings: AccountsSettings | None = None) -> None:
    """Serve until SIGTERM/SIGINT; returns after a graceful shutdown."""
    logging.basicConfig(level=service.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = build_state(service, engine, accounts_settings)
    app = create_app(state, owns_resources=True)
    freeze_startup_heap()
    loop, http_name = _loop_and_http()
    http: str | type[asyncio.Protocol] = http_name
    if http_name == "httptools":
        http = refusing_protocol(state, frozenset(EMBEDDINGS_PATHS)) or http_name
    config = uvicorn.Config(
        app,
        host=service.host,
        port=service.port,
        loop=loop,
        http=http,
        lifespan="on",
        log_level=service.log_level,
        access_log=service.access_log,
        backlog=service.backlog,
        timeout_keep_alive=int(service.keep_alive_s),
        timeout_graceful_shutdown=int(service.graceful_timeout_s),
        server_header=False,
    )
    server = _Server(config)
    log.info(
        "embedding2 serving %s (native %d dims) on http://%s:%d (%s, %s); ready when GET /ready answers 200",
        state.embedder.spec.name,
        state.embedder.spec.native_dim,
        service.host,
        service.port,
        loop,
        http_name,
    )
    try:
        server.run()
    finally:
        if not server.started:  # never got as far as the lifespan (port taken...): close here
            state.accounts.close()
            state.embedder.close()
