"""Quality evaluation of embedding backends (``embedding2 eval``).

The package measures any backend (the in-process engine or an Embedding-2/OpenAI-compatible HTTP
endpoint) on the task types of MTEB / C-MTEB, reading data in the layouts of ``../shared/evaldata``:

- :mod:`.metrics`  the metrics themselves, pure functions of vectors and labels;
- :mod:`.data`     dataset discovery and loading (pair, bitext, labelled-text and BEIR layouts);
- :mod:`.encoders` the backends, prefix handling, the on-disk vector cache and text deduplication;
- :mod:`.tasks`    one evaluation per task type, from a dataset and an encoder to scores;
- :mod:`.runner`   a whole run: task selection, progress, cached per-task results;
- :mod:`.report`   terminal / Markdown / JSON output and the published reference figures;
- :mod:`.commands` the ``embedding2 eval`` subcommand.
"""

# Nothing is imported here on purpose: every `embedding2` command imports `.commands` to register
# `eval`, and the metrics pull in SciPy; import the submodules you need
# (e.g. `from embedding2.evaluation.runner import evaluate`).
