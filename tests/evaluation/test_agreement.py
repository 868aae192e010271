"""Engine and service give the same scores: the same tasks through the in-process engine and through a
real `embedding2 serve` on 127.0.0.1 (embedding-2 vectors, 1024-d) agree to the second decimal."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from embedding2.engine.embedder import Embedder
from embedding2.evaluation.data import discover, select
from embedding2.evaluation.encoders import EngineEncoder, HttpEncoder, TokenFitter
from embedding2.evaluation.runner import evaluate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("embedding2.service") is None,
        reason="embedding2.service is not importable yet: no server to compare the engine with",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service_url(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("service-data")
    log = (data_dir / "server.log").open("wb")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedding2.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--no-auth", "--cache-dir", str(cache_dir)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail("embedding2 serve exited: " + (data_dir / "server.log").read_text(errors="replace"))
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("embedding2 serve not ready in 240 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_engine_and_service_scores_agree(e5: Embedder, service_url: str, evaldata: Path, tmp_path: Path) -> None:
    refs = discover(evaldata)
    selection = select(refs, "stsb-zh,tatoeba-cmn-eng,xquad-retrieval,thucnews-titles")
    runs = {}
    for name, encoder in (
        ("engine", EngineEncoder(e5)),
        ("service", HttpEncoder(service_url + "/v1", "embedding-2", concurrency=2)),
    ):
        try:
            # a fresh cache per run: reused only between the four xquad runs, which share their texts
            runs[name] = evaluate(encoder, selection, limit=12, cache_dir=tmp_path / name, show_progress=False)
        finally:
            encoder.close()
    engine = {r.row_key: r for r in runs["engine"].results}
    service = {r.row_key: r for r in runs["service"].results}
    assert set(engine) == set(service) and len(engine) == 9
    for key, r in engine.items():
        for metric, value in r.scores.items():
            assert service[key].scores[metric] == pytest.approx(value, abs=0.01), (key, metric)


def test_service_cuts_long_texts_like_the_engine(e5: Embedder, service_url: str, evaldata: Path) -> None:
    docs = [json.loads(line)["text"] for line in (evaldata / "cmrc2018-retrieval" / "corpus.jsonl").open()]
    counts = e5.count_tokens(docs, input_type="document")
    long_docs = [min((d for d, n in zip(docs, counts, strict=True) if n > 512), key=len)]  # shortest: fewest probes
    short = [d for d, n in zip(docs, counts, strict=True) if n < 300][:3]
    texts = long_docs + short
    engine = EngineEncoder(e5)
    ve = engine.encode(texts, "document")
    ve = ve / np.linalg.norm(ve, axis=1, keepdims=True)
    assert engine.truncated == len(long_docs)
    # over HTTP the server's 1261 answers find the cut; with the model's tokenizer the client finds it
    for fitter in (None, TokenFitter(e5.spec)):
        service = HttpEncoder(service_url + "/api/paas/v4", "embedding-2", fitter=fitter)
        try:
            vs = service.encode(texts, "document")
        finally:
            service.close()
        assert service.truncated == len(long_docs)
        assert vs.shape == (len(texts), 1024)  # embedding-2 vectors: an isometry of the native ones
        vs = vs / np.linalg.norm(vs, axis=1, keepdims=True)
        # the same cosines between every pair: the long texts were cut to the same strings
        np.testing.assert_allclose(vs @ vs.T, ve @ ve.T, atol=1e-4)
