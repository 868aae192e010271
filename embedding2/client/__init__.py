"""The Python SDK of the Embedding-2 API: the official SDKs' surface plus big jobs, retries and a cache.

    from embedding2.client import Client
    client = Client(api_key=KEY, base_url="http://127.0.0.1:8000/api/paas/v4")
    r = client.embeddings.create(model="embedding-2", input=["你好", "hello"])
    r.data[0].embedding, r.usage.total_tokens
    vectors = client.embed_many(texts, cache="vectors.sqlite")   # float32 (len(texts), 1024)

Modules, each with one owner:

    _base          configuration (api_key/base_url and their environment variables), request body,
                   answer decoding, the job report; ClientCore, shared by both clients
    sync_client    Client: embeddings.create, embed_many over a thread pool
    async_client   AsyncClient: the same with asyncio tasks
    planning       Job: the network-free core of embed_many (validate, count, chunk, cache, pack, assemble)
    tokens         token counters: exact (an embedding2 model's tokenizer) or a stated estimate
    retry          retry decisions, backoff with jitter, the adaptive concurrency limit
    cache          EmbeddingCache: the SQLite file of vectors by (model, dimensions, input_type, text)
    progress       the tqdm progress bar (tokens/s, ETA, cost so far)
    types          EmbeddingsResponse, Embedding, Usage
    errors         the exception tree (drawn in its docstring)

See docs/client.md.
"""

from embedding2.client._base import DEFAULT_BASE_URL, JobReport
from embedding2.client.async_client import AsyncClient
from embedding2.client.cache import EmbeddingCache
from embedding2.client.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    ConcurrencyLimitError,
    InternalServerError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerOverloadedError,
    TokenLimitError,
    UnknownModelError,
)
from embedding2.client.sync_client import Client
from embedding2.client.tokens import EstimatedTokenCounter, ModelTokenCounter, TokenCounter
from embedding2.client.types import Embedding, EmbeddingsResponse, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ClientError",
    "ConcurrencyLimitError",
    "Embedding",
    "EmbeddingCache",
    "EmbeddingsResponse",
    "EstimatedTokenCounter",
    "InternalServerError",
    "JobReport",
    "ModelTokenCounter",
    "NotFoundError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerOverloadedError",
    "TokenCounter",
    "TokenLimitError",
    "UnknownModelError",
    "Usage",
]
