"""The apps' encoders: in-process engine, a real `embedding2 serve` through the SDK, the vector cache,
and one scenario run both ways through the CLI's --base-url switch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from embedding2.apps.encoders import CachedEncoder, EngineEncoder, RemoteEncoder
from embedding2.apps.search import SearchIndex
from embedding2.cli import main
from embedding2.engine.embedder import Embedder
from tests.apps.conftest import Labelled, Retrieval


def test_engine_encoder_native_and_served(e5: Embedder, encoder: EngineEncoder, titles: Labelled) -> None:
    texts = titles.texts[:6]
    native = encoder.encode(texts)
    assert native.shape == (6, 384) and native.dtype == np.float32
    assert np.allclose(np.linalg.norm(native, axis=1), 1.0, atol=1e-5)
    assert np.allclose(native, e5.embed(texts, model=None).vectors, atol=1e-6)
    served = EngineEncoder(e5, served_model="embedding-2")
    wide = served.encode(texts)
    assert served.dims == 1024 and wide.shape == (6, 1024)
    assert np.allclose(wide, e5.embed(texts, model="embedding-2").vectors, atol=1e-6)
    assert np.allclose(wide @ wide.T, native @ native.T, atol=1e-5)  # same cosines
    # query/document prefixes differ, so do the vectors
    assert not np.allclose(encoder.encode(texts[:1], "document"), encoder.encode(texts[:1], "query"))
    assert encoder.encode([]).shape == (0, 384)


def test_cached_encoder_reuses_vectors(tmp_path: Path, encoder: EngineEncoder, titles: Labelled) -> None:
    cached = CachedEncoder(encoder, tmp_path / "cache")
    first = cached.encode(titles.texts[:8], "document")
    assert cached.path.is_file() and cached.path.parent == tmp_path / "cache"
    assert len(cached.store.get_many("document", titles.texts[:8])) == 8
    assert cached.store.get_many("symmetric", titles.texts[:8]) == {}
    again = CachedEncoder(encoder, tmp_path / "cache").encode(titles.texts[:8], "document")
    assert np.array_equal(first, again)
    cached.store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[str]:
    """A real `embedding2 serve --no-auth` on 127.0.0.1; yields its Zhipu-style base URL."""
    port = _free_port()
    data = tmp_path_factory.mktemp("apps-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING2_")}
    cmd = [sys.executable, "-m", "embedding2.cli", "serve", "--no-auth", "--port", str(port), "--data-dir", str(data)]
    cmd += ["--cache-dir", str(cache_dir), "--log-level", "warning"]
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, (data / "server.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/api/paas/v4"
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def test_remote_encoder_matches_engine(endpoint: str, e5: Embedder, cache_dir: Path, titles: Labelled) -> None:
    remote = RemoteEncoder(endpoint, cache_dir=cache_dir)
    try:
        texts = titles.texts[:20]
        got = remote.encode(texts, "query")
        want = EngineEncoder(e5, served_model="embedding-2").encode(texts, "query")
        assert got.shape == (20, 1024)
        assert np.min(np.sum(got * want, axis=1)) > 0.9999
        assert remote.count_tokens(texts, "document") == e5.count_tokens(texts, input_type="document")
    finally:
        remote.close()


def test_one_index_both_ways(tmp_path: Path, endpoint: str, e5: Embedder, cache_dir: Path, xquad: Retrieval) -> None:
    """An index built through the endpoint answers the same as one built in-process (embedding-2 vectors)."""
    from embedding2.apps.documents import Document

    docs = [Document(i, t, "xquad") for i, t in zip(xquad.doc_ids[:10], xquad.docs[:10], strict=True)]
    remote = RemoteEncoder(endpoint, cache_dir=cache_dir)
    local = EngineEncoder(e5, served_model="embedding-2")
    try:
        with SearchIndex(tmp_path / "remote", remote) as a, SearchIndex(tmp_path / "local", local) as b:
            a.add(docs)
            b.add(docs)
            q = local.encode(xquad.queries[:10], "query")
            ra = [[d for d, _, _ in row] for row in a.rank(q, 5)]
            rb = [[d for d, _, _ in row] for row in b.rank(q, 5)]
            assert ra == rb
    finally:
        remote.close()


def test_cli_switches_to_the_endpoint(
    tmp_path: Path, endpoint: str, cache_dir: Path, titles: Labelled, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "titles.txt"
    src.write_text("\n".join(titles.texts[:30] + titles.texts[-30:]), encoding="utf-8")
    runs = {}
    for name, extra in (("remote", ["--base-url", endpoint]), ("local", ["--served-model", "embedding-2"])):
        assert main(["cluster", str(src), "-k", "2", "--json", "--cache-dir", str(cache_dir), *extra]) == 0
        runs[name] = json.loads(capsys.readouterr().out)
    assert runs["remote"] == runs["local"]
