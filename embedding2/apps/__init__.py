"""The scenario toolkit: what the embedding service exists for, usable in-process or over HTTP.

- :mod:`~embedding2.apps.encoders`: the :class:`Encoder` protocol (texts -> L2-normalised float32 rows)
  with an in-process implementation (the engine) and a remote one (any Embedding-2-compatible endpoint
  through :class:`embedding2.client.Client`), plus an on-disk vector cache;
- :mod:`~embedding2.apps.documents`: reading txt, md, jsonl, csv and tsv files into documents or records;
- :mod:`~embedding2.apps.chunking`: sentence-aware chunking (Chinese and English) under a token limit;
- :mod:`~embedding2.apps.search`: a persistent semantic-search index (usearch HNSW + SQLite);
- :mod:`~embedding2.apps.cluster`: k-means clustering with automatic k, keywords, representatives, 2-D map;
- :mod:`~embedding2.apps.recommend`: recency-weighted profiles, MMR diversity, "more like this";
- :mod:`~embedding2.apps.anomaly`: k-NN distance, LOF or IsolationForest scores with a percentile threshold;
- :mod:`~embedding2.apps.kbqa`: knowledge-base QA (retrieval, optional answer from a chat endpoint);
- :mod:`~embedding2.apps.lexical`: the character n-gram TF-IDF used for keywords and as the baseline;
- :mod:`~embedding2.apps.quality`: the script that measures every scenario on ``../shared/evaldata``;
- :mod:`~embedding2.apps.commands`: the ``embedding2 search|cluster|recommend|anomaly|kb`` subcommands.
"""
