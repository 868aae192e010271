"""Knowledge-base QA: add documents, ask a question, get the best passages and, optionally, an answer.

The knowledge base is a :class:`~embedding2.apps.search.SearchIndex` folder (same files, same
commands). :meth:`KnowledgeBase.ask` retrieves the ``k`` best passages (each a document's best chunk,
with its source and cosine score). When a chat endpoint is configured (:class:`ChatConfig`: any
OpenAI-compatible ``POST {base_url}/chat/completions``, e.g. Zhipu GLM at
``https://open.bigmodel.cn/api/paas/v4`` with model ``glm-4-flash``), the passages are numbered
``[1]..[k]`` in a prompt that asks for an answer from them only, citing them by number; the numbers
cited in the answer are returned with it. Without one, ``ask`` returns the passages alone.

The chat endpoint is configured by arguments or by ``EMBEDDING2_CHAT_BASE_URL``,
``EMBEDDING2_CHAT_API_KEY`` and ``EMBEDDING2_CHAT_MODEL``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedding2.apps.documents import Document
from embedding2.apps.encoders import Encoder
from embedding2.apps.search import AddReport, Hit, SearchIndex

SYSTEM_PROMPT = (
    "You answer questions from the numbered passages given with each question, and from nothing else. "
    "Cite every passage you use by its number in square brackets, like [1] or [2][3]. If the passages do "
    "not contain the answer, say that you cannot tell from them. Answer in the language of the question."
)
_CITATION = re.compile(r"\[(\d{1,3})\]")


class ChatError(RuntimeError):
    """The chat endpoint failed or answered in an unexpected shape."""


@dataclass(frozen=True)
class ChatConfig:
    """An OpenAI-compatible chat-completions endpoint."""

    base_url: str
    model: str = "glm-4-flash"
    api_key: str | None = None
    timeout_s: float = 120.0
    temperature: float = 0.1
    max_tokens: int = 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ChatConfig | None:
        """The endpoint named by ``EMBEDDING2_CHAT_*`` variables (overridden by non-None ``overrides``),
        or None when no base URL is set."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "base_url": env.get("EMBEDDING2_CHAT_BASE_URL"),
            "model": env.get("EMBEDDING2_CHAT_MODEL"),
            "api_key": env.get("EMBEDDING2_CHAT_API_KEY"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("base_url"):
            return None
        return cls(**{k: v for k, v in values.items() if v is not None})


@dataclass
class Answer:
    question: str
    passages: list[Hit]
    answer: str | None = None  # None when no chat endpoint is configured
    citations: list[int] = field(default_factory=list)  # 1-based passage numbers cited in the answer
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "citations": self.citations,
            "model": self.model,
            "passages": [dict(h.as_dict(), n=i + 1) for i, h in enumerate(self.passages)],
        }


def build_messages(question: str, passages: list[Hit]) -> list[dict[str, str]]:
    """The chat messages: the instructions, then the numbered passages with their sources, then the question."""
    blocks = []
    for i, hit in enumerate(passages, 1):
        title = hit.meta.get("title")
        source = f"{hit.source}" + (f" ({title})" if title else "")
        blocks.append(f"[{i}] source: {source}\n{hit.text}")
    user = "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def citations(answer: str, n_passages: int) -> list[int]:
    """Passage numbers cited as ``[n]`` in ``answer`` (in order of first citation, valid numbers only)."""
    seen: list[int] = []
    for m in _CITATION.finditer(answer):
        n = int(m.group(1))
        if 1 <= n <= n_passages and n not in seen:
            seen.append(n)
    return seen


def chat(config: ChatConfig, messages: list[dict[str, str]], *, client: Any = None) -> str:
    """The assistant's reply from ``POST {base_url}/chat/completions``."""
    import httpx

    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    body = {
        "model": config.model,
        "messages": messages,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "stream": False,
    }
    url = config.base_url.rstrip("/") + "/chat/completions"
    try:
        if client is not None:
            resp = client.post(url, json=body, headers=headers, timeout=config.timeout_s)
        else:
            resp = httpx.post(url, json=body, headers=headers, timeout=config.timeout_s)
    except httpx.HTTPError as exc:
        raise ChatError(f"POST {url} failed: {exc}") from exc
    if resp.status_code != 200:
        raise ChatError(f"POST {url}: HTTP {resp.status_code}: {resp.text[:500]}")
    try:
        return str(resp.json()["choices"][0]["message"]["content"]).strip()
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ChatError(f"POST {url}: not a chat-completions answer: {resp.text[:500]}") from exc


class KnowledgeBase:
    """Documents in a search index, questions answered from their best passages."""

    def __init__(
        self, path: str | Path, encoder: Encoder, *, chat: ChatConfig | None = None, **index_options: Any
    ) -> None:
        self.index = SearchIndex(path, encoder, **index_options)
        self.chat = chat

    def add(self, docs: Iterable[Document], **kwargs: Any) -> AddReport:
        return self.index.add(docs, **kwargs)

    def delete(self, doc_ids: Iterable[str]) -> int:
        return self.index.delete(doc_ids)

    def retrieve(self, question: str, k: int = 5) -> list[Hit]:
        hits: list[Hit] = self.index.search(question, k)
        return hits

    def ask(self, question: str, k: int = 5, *, generate: bool = True) -> Answer:
        """The best ``k`` passages for ``question``, and an answer citing them when a chat endpoint is set."""
        passages = self.retrieve(question, k)
        result = Answer(question, passages)
        if generate and self.chat is not None and passages:
            reply = chat(self.chat, build_messages(question, passages))
            result.answer = reply
            result.citations = citations(reply, len(passages))
            result.model = self.chat.model
        return result

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Answer", "ChatConfig", "ChatError", "KnowledgeBase", "build_messages", "chat", "citations"]
