"""ONNX Runtime backend (CPU): the exported model, optionally int8-quantised after a fidelity check."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from embedding2.engine.backends.onnx_export import ensure_onnx
from embedding2.engine.pooling import pool
from embedding2.models.spec import ModelSpec
from embedding2.settings import Settings

log = logging.getLogger(__name__)

# int8 is offered only if every probe text keeps at least this cosine with its fp32 vector
INT8_MIN_COSINE = 0.99

# Chinese and English probes of mixed length for the int8 fidelity check
PROBE_TEXTS = [
    "你好",
    "美食非常美味，服务员也很友好。",
    "这部电影既刺激又令人兴奋。",
    "如何申请信用卡的分期付款？需要满足什么条件，手续费是多少？",
    "北京是中华人民共和国的首都，也是全国的政治、文化和国际交往中心，有三千多年的建城史。",
    "The food was delicious and the waiter was friendly.",
    "how much protein should a female eat per day",
    "A man is playing a guitar on the street while people walk past.",
    "Semantic search finds documents by meaning rather than by matching keywords, "
    "which helps when users phrase questions differently from the documents that answer them.",
    "混合 mixed 中文 and English 文本 in one sentence.",
    "股票市场今天大幅下跌，投资者担心通货膨胀和利率上升会影响经济增长。",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # Idle intra-op threads sleep instead of spin-waiting. Spinning only pays on cores nobody else wants;
    # here they are shared with the HTTP loop, the tokenizer threads and other processes, and on a busy
    # 2-core machine spinning measured 18-22% less throughput and twice the short-query p50
    # (docs/performance.md, "Investigation").
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_session(session: ort.InferenceSession, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Last hidden state of right-padded ``input_ids``."""
    mask = (np.arange(input_ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
    return session.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": mask})[0]


class OnnxBackend:
    name = "onnx"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self.spec = spec
        fp32 = ensure_onnx(spec.path, settings.cache_dir)
        path = fp32
        self.quantized = False
        if settings.quantize:
            int8 = ensure_int8(fp32, spec, settings.threads)
            if int8 is not None:
                path, self.quantized = int8, True
        self.model_path = path
        self.session = make_session(path, settings.threads)

    def forward(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        hidden = run_session(self.session, input_ids, lengths)
        return pool(hidden, lengths.tolist(), self.spec.pooling)

    def close(self) -> None:
        del self.session


def _probe_vectors(session: ort.InferenceSession, spec: ModelSpec) -> np.ndarray:
    from embedding2.engine.adapter import l2_normalize
    from embedding2.engine.tokenization import TextTokenizer

    tok = TextTokenizer(spec)
    out = []
    for item in tok.tokenize(PROBE_TEXTS, truncate=True):
        ids = item.ids[None, :]
        lengths = np.array([item.n_tokens], dtype=np.int64)
        out.append(pool(run_session(session, ids, lengths), [item.n_tokens], spec.pooling)[0])
    return l2_normalize(np.stack(out))


def ensure_int8(fp32: Path, spec: ModelSpec, threads: int) -> Path | None:
    """Dynamic int8 quantisation of ``fp32``, kept only if it passes the fidelity check.

    The verdict (with the measured cosines) is written beside the model as ``int8.json``; a model
    that failed is not offered again (``None`` is returned and the fp32 model is used).
    """
    target = fp32.parent / "model.int8.onnx"
    verdict_file = fp32.parent / "int8.json"
    if verdict_file.is_file():
        verdict = json.loads(verdict_file.read_text())
        if verdict.get("accepted") and target.is_file():
            return target
        if not verdict.get("accepted"):
            log.warning("int8 model rejected earlier (min cosine %.4f); using fp32", verdict.get("min_cosine", 0))
            return None
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_suffix(".tmp.onnx")
    # the fused graph holds contrib ops (Attention, SkipLayerNormalization...) that ONNX shape inference
    # cannot type; their outputs are float32, which the quantiser must be told
    quantize_dynamic(
        str(fp32),
        str(tmp),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    ref = _probe_vectors(make_session(fp32, threads), spec)
    got = _probe_vectors(make_session(tmp, threads), spec)
    cos = np.einsum("ij,ij->i", ref, got)
    accepted = bool(cos.min() >= INT8_MIN_COSINE)
    verdict = {
        "accepted": accepted,
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "threshold": INT8_MIN_COSINE,
        "probes": len(PROBE_TEXTS),
    }
    if accepted:
        os.replace(tmp, target)
    else:
        tmp.unlink(missing_ok=True)
        log.warning("int8 quantisation failed the fidelity check (min cosine %.4f); using fp32", cos.min())
    verdict_file.write_text(json.dumps(verdict, indent=2))
    return target if accepted else None
