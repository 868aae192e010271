"""Knowledge-base QA: retrieval on cmrc2018 paragraphs, and the answer step against a chat endpoint.

The chat endpoint is a small OpenAI-compatible server on 127.0.0.1 standing in for an external LLM
(GLM or any other): it answers from the passages it is sent, so the test checks what the knowledge
base sends and how it reads the reply, not a language model."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from embedding2.apps.documents import Document
from embedding2.apps.encoders import EngineEncoder
from embedding2.apps.kbqa import ChatConfig, ChatError, KnowledgeBase, citations
from embedding2.cli import main
from tests.apps.conftest import Retrieval


@pytest.fixture(scope="module")
def kb_path(tmp_path_factory: pytest.TempPathFactory, encoder: EngineEncoder, cmrc: Retrieval) -> Path:
    path = tmp_path_factory.mktemp("kb") / "cmrc"
    with KnowledgeBase(path, encoder) as kb:
        docs = zip(cmrc.doc_ids[:30], cmrc.docs[:30], strict=True)
        kb.add(Document(i, t, f"cmrc2018/{i}", {"title": f"paragraph {i}"}) for i, t in docs)
    return path


def test_retrieval_finds_the_gold_passage(kb_path: Path, encoder: EngineEncoder, cmrc: Retrieval) -> None:
    hits, first = [], []
    with KnowledgeBase(kb_path, encoder, create=False) as kb:
        for question, rel in zip(cmrc.queries, cmrc.relevant, strict=True):
            if not set(rel) <= set(cmrc.doc_ids[:30]):
                continue
            answer = kb.ask(question, 5)
            assert answer.answer is None and len(answer.passages) == 5
            ids = [p.doc_id for p in answer.passages]
            hits.append(any(rel.get(i, 0) > 0 for i in ids))
            first.append(rel.get(ids[0], 0) > 0)
            assert all(p.source == f"cmrc2018/{p.doc_id}" for p in answer.passages)
    assert len(hits) >= 25
    assert np.mean(hits) >= 0.9 and np.mean(first) >= 0.7, (np.mean(hits), np.mean(first))


class _Chat(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["authorization"] = self.headers.get("Authorization")
        _Chat.requests.append(body)
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.end_headers()
            return
        prompt = body["messages"][-1]["content"]
        n = len(re.findall(r"^\[\d+\] source:", prompt, flags=re.M))
        reply = {"choices": [{"message": {"role": "assistant", "content": f"From the passages [2][1] and [{n + 5}]."}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def chat_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Chat.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_answer_cites_passages(kb_path: Path, encoder: EngineEncoder, cmrc: Retrieval, chat_url: str) -> None:
    chat = ChatConfig(base_url=chat_url, model="glm-4-flash", api_key="secret")
    with KnowledgeBase(kb_path, encoder, chat=chat, create=False) as kb:
        answer = kb.ask(cmrc.queries[0], 3)
    assert answer.answer == "From the passages [2][1] and [8]."
    assert answer.citations == [2, 1]  # [8] is no passage: dropped
    sent = _Chat.requests[-1]
    assert sent["model"] == "glm-4-flash" and sent["authorization"] == "Bearer secret"
    prompt = sent["messages"][-1]["content"]
    assert cmrc.queries[0] in prompt
    for i, p in enumerate(answer.passages, 1):
        assert f"[{i}] source: {p.source} (paragraph {p.doc_id})\n{p.text}" in prompt
    assert answer.as_dict()["passages"][0]["n"] == 1


def test_chat_errors_and_config(kb_path: Path, encoder: EngineEncoder, chat_url: str) -> None:
    with KnowledgeBase(kb_path, encoder, chat=ChatConfig(base_url=chat_url + "/wrong"), create=False) as kb:
        with pytest.raises(ChatError, match="404"):
            kb.ask("问题", 2)
        assert kb.ask("问题", 2, generate=False).answer is None
    assert ChatConfig.from_env({}) is None
    cfg = ChatConfig.from_env(
        {"EMBEDDING2_CHAT_BASE_URL": "http://x/v4", "EMBEDDING2_CHAT_MODEL": "glm-4"}, api_key="k"
    )
    assert cfg == ChatConfig(base_url="http://x/v4", model="glm-4", api_key="k")
    assert citations("见[1]和[3]，以及[1]。", 2) == [1]


def test_cli_add_and_ask(
    tmp_path: Path, cache_dir: Path, cmrc: Retrieval, chat_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(
            json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n"
            for i, t in zip(cmrc.doc_ids[:8], cmrc.docs[:8], strict=True)
        ),
        encoding="utf-8",
    )
    kb = ["--kb", str(tmp_path / "kb"), "--cache-dir", str(cache_dir)]
    assert main(["kb", "add", str(docs), *kb]) == 0
    assert "8 added" in capsys.readouterr().out
    q = next(q for q, rel in zip(cmrc.queries, cmrc.relevant, strict=True) if set(rel) <= set(cmrc.doc_ids[:8]))
    assert main(["kb", "ask", q, "-k", "3", "--chat-base-url", chat_url, "--json", *kb]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"].startswith("From the passages") and out["citations"] == [2, 1]
    assert len(out["passages"]) == 3 and out["passages"][0]["source"] == str(docs.resolve())
