"""Tiny, randomly initialised model folders with the architectures of the production models.

``build_bge_m3_like`` writes an XLM-RoBERTa encoder (1024-d, CLS pooling, Normalize, no prompts) laid
out like BAAI/bge-m3; ``build_qwen3_embedding_like`` writes a Qwen3 decoder (1024-d, last-token
pooling, Normalize, instruction prompt for queries, ``<|endoftext|>`` appended by the tokenizer,
left padding in ``tokenizer_config.json``) laid out like Qwen/Qwen3-Embedding-0.6B. Weights are
seeded random (safetensors via ``save_pretrained``); tokenizers are built here with the
``tokenizers`` library from a small Chinese + English corpus (a Unigram vocabulary for XLM-R, a
trained byte-level BPE for Qwen3). The same seed gives byte-identical folders, hence the same ONNX
export hash. Both are small enough to export to ONNX in seconds.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

# what the tokenizers are built from: both scripts, mixed lengths, digits and punctuation
CORPUS = [
    "今天天气很好，我们去公园散步吧。",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "如何申请信用卡的分期付款？需要满足什么条件，手续费是多少？",
    "这部电影既刺激又令人兴奋，演员的表演非常出色。",
    "股票市场今天大幅下跌，投资者担心通货膨胀和利率上升。",
    "机器学习是人工智能的一个分支，研究计算机如何从数据中学习。",
    "我喜欢吃苹果和香蕉，但是不喜欢吃葡萄。",
    "上海的夜景非常美丽，很多游客晚上去外滩拍照。",
    "请问去火车站怎么走？坐地铁大约需要二十分钟。",
    "语义搜索根据意思而不是关键词来查找文档。",
    "The food was delicious and the waiter was very friendly.",
    "How much protein should a female eat per day?",
    "A man is playing a guitar on the street while people walk past.",
    "Semantic search finds documents by meaning rather than by matching keywords.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The stock market fell sharply today as investors worried about inflation.",
    "Machine learning is a branch of artificial intelligence that learns from data.",
    "Instruct: Given a web search query, retrieve relevant passages that answer the query",
    "The quick brown fox jumps over the lazy dog 12345 times in 2024.",
    "混合 mixed 中文 and English 文本 in one sentence.",
]

# what Qwen/Qwen3-Embedding-0.6B ships in config_sentence_transformers.json (verbatim)
QWEN3_PROMPTS = {
    "query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
    "document": "",
}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_st_files(folder: Path, *, pooling: str, max_seq_length: int, prompts: dict[str, str] | None) -> None:
    """sentence-transformers files: Transformer -> Pooling(``pooling``) -> Normalize."""
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    modes = {"cls": False, "mean": False, "lasttoken": False}
    modes[pooling] = True
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": 1024,
            "pooling_mode_cls_token": modes["cls"],
            "pooling_mode_mean_tokens": modes["mean"],
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": modes["lasttoken"],
            "include_prompt": True,
        },
    )
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    st_config: dict[str, Any] = {
        "__version__": {"sentence_transformers": "3.0.1"},
        "prompts": prompts or {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    _write_json(folder / "config_sentence_transformers.json", st_config)


# ---------------------------------------------------------------------------------------- bge-m3-like
XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as in XLM-R


def _xlmr_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # the pipeline transformers' XLMRobertaTokenizer rebuilds around a tokenizer.json's vocabulary
    # (it keeps only a SentencePiece charsmap as normaliser), so both read this file the same way
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )


def xlmr_tokenizer(vocab_size: int = 600) -> Tokenizer:
    """A Unigram (SentencePiece-style) tokenizer with XLM-R's special tokens and ``<s> $A </s>``.

    The vocabulary is every character of the corpus plus its most frequent 2-4 character pieces,
    scored by log frequency. (``UnigramTrainer`` would do, but its output varies from run to run.)
    """
    pre = _xlmr_pre_tokenizer()
    counts: Counter[str] = Counter()
    for line in CORPUS:
        for word, _ in pre.pre_tokenize_str(line):
            for i in range(len(word)):
                for n in range(1, 5):
                    if i + n <= len(word):
                        counts[word[i : i + n]] += 1
    chars = sorted(p for p in counts if len(p) == 1)
    room = vocab_size - len(XLMR_SPECIALS) - len(chars)
    pieces = sorted((p for p in counts if len(p) > 1 and counts[p] > 1), key=lambda p: (-counts[p] * len(p), p))
    total = sum(counts.values())
    vocab = [(t, 0.0) for t in XLMR_SPECIALS] + [(p, math.log(counts[p] / total)) for p in chars + pieces[:room]]
    tok = Tokenizer(models.Unigram(vocab, unk_id=XLMR_SPECIALS.index("<unk>"), byte_fallback=False))
    tok.add_special_tokens(XLMR_SPECIALS)
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    assert (bos, eos) == (0, 2)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return tok


def build_bge_m3_like(folder: Path, *, seed: int = 1234, max_tokens: int = 64) -> Path:
    """An XLM-RoBERTa encoder with bge-m3's layout: 1024-d, CLS pooling, Normalize, no prompts."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    folder.mkdir(parents=True, exist_ok=True)
    tok = xlmr_tokenizer()
    tok.save(str(folder / "tokenizer.json"))
    config = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=1024,
        num_hidden_layers=2,
        num_attention_heads=8,
        intermediate_size=256,
        max_position_embeddings=max_tokens + 2,  # XLM-R positions start after the padding index
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    config.architectures = ["XLMRobertaModel"]
    torch.manual_seed(seed)
    model = XLMRobertaModel(config).eval()  # with the (unused) pooler, as bge-m3's checkpoint has it
    model.save_pretrained(folder, safe_serialization=True)
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "XLMRobertaTokenizer",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "cls_token": "<s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
            "model_max_length": max_tokens,
        },
    )
    _write_json(
        folder / "special_tokens_map.json",
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
    )
    _write_st_files(folder, pooling="cls", max_seq_length=max_tokens, prompts=None)
    return folder


# ------------------------------------------------------------------------------- Qwen3-Embedding-like
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def qwen3_tokenizer(vocab_size: int = 700) -> Tokenizer:
    """A byte-level BPE with Qwen3-Embedding's post-processor, which appends ``<|endoftext|>``."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="$A:0 <|endoftext|>:0",
                pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
                special_tokens=[("<|endoftext|>", eot)],
            ),
        ]
    )
    return tok


def build_qwen3_embedding_like(
    folder: Path, *, seed: int = 4321, max_positions: int = 128, max_seq_length: int = 80
) -> Path:
    """A Qwen3 decoder with Qwen3-Embedding's layout: 1024-d, last-token pooling, Normalize, prompts.

    ``max_seq_length`` (sentence_bert_config.json) is below ``max_positions`` on purpose: the folder's
    sentence-transformers limit is the one that must apply.
    """
    import torch
    from transformers import Qwen3Config, Qwen3Model

    folder.mkdir(parents=True, exist_ok=True)
    tok = qwen3_tokenizer()
    tok.save(str(folder / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    im_end = tok.token_to_id("<|im_end|>")
    fields: dict[str, Any] = {
        "vocab_size": tok.get_vocab_size(),
        "hidden_size": 1024,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,  # grouped-query attention, as in the real model
        "head_dim": 64,
        "max_position_embeddings": max_positions,
        "rope_theta": 1_000_000.0,  # transformers 5 files it under rope_parameters
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": im_end,
        "use_cache": True,
    }
    config = Qwen3Config(**fields)
    torch.manual_seed(seed)
    model = Qwen3Model(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # save_pretrained records the class it saved (Qwen3Model); the real folder names the causal LM
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    saved["architectures"] = ["Qwen3ForCausalLM"]
    _write_json(folder / "config.json", saved)
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "Qwen2Tokenizer",
            "padding_side": "left",
            "pad_token": "<|endoftext|>",
            "eos_token": "<|im_end|>",
            "bos_token": None,
            "unk_token": None,
            "model_max_length": max_positions,
        },
    )
    _write_st_files(folder, pooling="lasttoken", max_seq_length=max_seq_length, prompts=QWEN3_PROMPTS)
    return folder
