"""Request parsing and response encoding, without a server: every contract code for its kind of mistake."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from embedding2.errors import InputError
from embedding2.service.encoding import render_embeddings, render_error, vector_to_base64
from embedding2.service.schemas import RequestLimits, parse_embedding_request


def parse(body: object) -> object:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return parse_embedding_request(raw)


def code_of(body: object) -> str:
    with pytest.raises(InputError) as info:
        parse(body)
    return info.value.code


def test_accepts_every_contract_field_and_ignores_unknown_keys() -> None:
    req = parse(
        {
            "model": "embedding-3",
            "input": ["a", "b"],
            "dimensions": 256,
            "encoding_format": "base64",
            "user": "u1",
            "user_id": "u2",
            "request_id": "r-1",
            "sensitive_word_check": {"type": "ALL", "status": "DISABLE"},
            "input_type": "query",
            "whatever": [1, 2, 3],
        }
    )
    assert req.model == "embedding-3"  # type: ignore[attr-defined]
    assert req.input == ["a", "b"]  # type: ignore[attr-defined]
    assert req.dimensions == 256  # type: ignore[attr-defined]
    assert req.encoding_format == "base64"  # type: ignore[attr-defined]
    assert req.request_id == "r-1"  # type: ignore[attr-defined]
    assert req.input_type == "query"  # type: ignore[attr-defined]


def test_single_string_and_nulls_for_optional_fields() -> None:
    req = parse({"model": "embedding-2", "input": "你好", "dimensions": None, "encoding_format": None})
    assert req.input == ["你好"]  # type: ignore[attr-defined]
    assert req.encoding_format == "float"  # type: ignore[attr-defined]
    assert req.dimensions is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "1210"),
        (b"{", "1210"),
        (b"\xff\xfe{}", "1210"),
        (b'{"model": "embedding-2", "input": "\xc3\x28"}', "1210"),  # invalid UTF-8 inside a string
        (b'{"model": "embedding-2", "input": "\\ud800"}', "1210"),  # lone surrogate
        (b"[1, 2]", "1210"),
        (b'"text"', "1210"),
        ({"input": "a"}, "1213"),
        ({"model": "embedding-2"}, "1213"),
        ({"model": None, "input": "a"}, "1213"),
        ({"model": "embedding-2", "input": None}, "1213"),
        ({"model": 2, "input": "a"}, "1210"),
        ({"model": "gpt-4", "input": "a"}, "1211"),
        ({"model": "", "input": "a"}, "1211"),
        ({"model": "embedding-2", "input": ""}, "1214"),
        ({"model": "embedding-2", "input": "   "}, "1214"),
        ({"model": "embedding-2", "input": []}, "1214"),
        ({"model": "embedding-2", "input": ["ok", ""]}, "1214"),
        ({"model": "embedding-2", "input": [1, 2, 3]}, "1214"),
        ({"model": "embedding-2", "input": [[1, 2], [3]]}, "1214"),
        ({"model": "embedding-2", "input": 5}, "1210"),
        ({"model": "embedding-2", "input": {"text": "a"}}, "1210"),
        ({"model": "embedding-2", "input": ["a", 1]}, "1210"),
        ({"model": "embedding-2", "input": ["a", None]}, "1210"),
        ({"model": "embedding-2", "input": "a", "dimensions": 512}, "1214"),
        ({"model": "embedding-3", "input": "a", "dimensions": 300}, "1214"),
        ({"model": "embedding-3", "input": "a", "dimensions": -1}, "1214"),
        ({"model": "embedding-2", "input": "a", "dimensions": "1024"}, "1210"),
        ({"model": "embedding-2", "input": "a", "dimensions": 1024.5}, "1210"),
        ({"model": "embedding-2", "input": "a", "dimensions": True}, "1210"),
        ({"model": "embedding-2", "input": "a", "encoding_format": "binary"}, "1214"),
        ({"model": "embedding-2", "input": "a", "encoding_format": 1}, "1210"),
        ({"model": "embedding-2", "input": "a", "input_type": "passage"}, "1214"),
        ({"model": "embedding-2", "input": "a", "request_id": ""}, "1214"),
        ({"model": "embedding-2", "input": "a", "request_id": "x" * 129}, "1214"),
        ({"model": "embedding-2", "input": "a", "request_id": 7}, "1210"),
        ({"model": "embedding-2", "input": ["a"] * 2049}, "1214"),
        ({"model": "embedding-3", "input": ["a"] * 65}, "1214"),
        ({"model": "embedding-2", "input": "字" * 40_000}, "1261"),  # refused before tokenizing
        ({"model": "embedding-2", "input": ["word " * 5000] * 30}, "1261"),  # the whole request, by characters
    ],
)
def test_each_mistake_gets_its_contract_code(body: object, code: str) -> None:
    assert code_of(body) == code


def test_character_precap_uses_the_backing_models_limit() -> None:
    body = orjson.dumps({"model": "embedding-3", "input": "字" * 40_000})
    parse_embedding_request(body)  # under embedding-3's 3,072 tokens x 64 characters: left to the tokenizer
    with pytest.raises(InputError) as info:
        parse_embedding_request(body, RequestLimits(backing_max_tokens=512))  # the backing model takes 512
    assert info.value.code == "1261" and "512 tokens" in info.value.message


def test_base64_is_little_endian_float32() -> None:
    v = np.array([1.0, -0.5, 0.25, 3.0e-8], dtype=np.float32)
    raw = base64.b64decode(vector_to_base64(v))
    assert raw == v.astype("<f4").tobytes()
    assert np.array_equal(np.frombuffer(raw, dtype="<f4"), v)


def test_float_json_reads_back_to_the_same_float32_bits() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((5, 1024)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for fmt in ("float", "base64"):
        body = orjson.loads(
            render_embeddings(
                vectors,
                model="embedding-2",
                encoding_format=fmt,
                total_tokens=9,
                response_id="i",
                created=1,
                request_id="r",
            )
        )
        assert [d["index"] for d in body["data"]] == list(range(5))
        assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9}
        if fmt == "float":
            got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        else:
            got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
        assert np.array_equal(got, vectors)


def test_error_envelope() -> None:
    assert orjson.loads(render_error("1214", "bad")) == {"error": {"code": "1214", "message": "bad"}}
