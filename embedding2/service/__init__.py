"""The HTTP API of embedding2: the Embedding-2 contract over FastAPI/uvicorn.

    config     ServiceSettings (host, port, data dir, request limits; EMBEDDING2_* variables)
    schemas    request body -> EmbeddingRequest, with the contract's error codes
    encoding   response bodies: float JSON / base64 vectors, the error envelope
    responses  HTTP responses, statuses from the one error table, retry hints
    metrics    Prometheus registry, per-stage timing, per-batch engine figures
    state      ServiceState (engine, accounts, metrics, readiness) handed to the app
    routes     the handlers: embeddings, models, health, ready, metrics
    app        create_app(state): routes, error envelope for every error, lifespan shutdown
    server     build_state + uvicorn runner with graceful shutdown
    commands   `embedding2 serve`

The layer knows the engine and accounts packages; neither knows it.
"""

from embedding2.service.app import create_app
from embedding2.service.config import ServiceSettings, load_service_settings
from embedding2.service.state import ServiceState

__all__ = ["ServiceSettings", "ServiceState", "create_app", "load_service_settings"]
