"""Text -> vectors, in-process, with no server involved.

- :mod:`.tokenization`: the model's tokenizer, prefixes, token counts and the per-item limit;
- :mod:`.backends`: the forward pass (ONNX Runtime on CPU, PyTorch on CPU/GPU) and pooling;
- :mod:`.scheduler`: dynamic batching across concurrent callers with a bounded queue;
- :mod:`.adapter`: L2 normalisation and the dimension adapter (1024 for embedding-2);
- :mod:`.embedder`: :class:`Embedder`, the sync and async entry point that ties them together.
"""
