"""embedding2: a self-hosted, drop-in implementation of the Embedding-2 text-embedding service.

The package is layered (see docs/architecture.md): ``models`` says what a model is and where its
weights come from, ``engine`` turns text into vectors in-process, and the layers above (service,
client, apps) stand on the engine. The public entry point for in-process use is :class:`Embedder`.
"""

from embedding2.client import AsyncClient, Client, ClientError, EmbeddingCache
from embedding2.engine.embedder import Embedder, EmbeddingResult
from embedding2.errors import Embedding2Error, InputError, OverloadedError

__version__ = "0.1.0"
__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Embedder",
    "Embedding2Error",
    "EmbeddingCache",
    "EmbeddingResult",
    "InputError",
    "OverloadedError",
    "__version__",
]
