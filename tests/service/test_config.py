"""`embedding2 serve` settings: defaults < EMBEDDING2_* environment < command-line flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedding2.cli import build_parser
from embedding2.service.config import ServiceSettings, load_service_settings


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDDING2_PORT", "9123")
    monkeypatch.setenv("EMBEDDING2_NO_AUTH", "1")
    monkeypatch.setenv("EMBEDDING2_DATA_DIR", str(tmp_path / "env"))
    s = load_service_settings()
    assert (s.port, s.no_auth, s.data_dir) == (9123, True, tmp_path / "env")
    s = load_service_settings(port=9000, data_dir=tmp_path / "flag", no_auth=None)  # None: flag not given
    assert (s.port, s.no_auth, s.data_dir) == (9000, True, tmp_path / "flag")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "MAX_BODY_BYTES", "NO_AUTH"):
        monkeypatch.delenv(f"EMBEDDING2_{name}", raising=False)
    s = ServiceSettings()
    assert s.host == "127.0.0.1" and s.max_body_bytes == 2 * 1024 * 1024 and not s.no_auth


def test_serve_flags_parse() -> None:
    args = build_parser().parse_args(
        ["serve", "--host", "0.0.0.0", "--port", "1234", "--data-dir", "/d", "--no-auth", "--model", "minilm",
         "--threads", "2", "--quantize", "--cache-dir", "/c"]
    )  # fmt: skip
    assert (args.host, args.port, args.data_dir, args.no_auth) == ("0.0.0.0", 1234, Path("/d"), True)
    assert (args.model, args.threads, args.quantize, args.cache_dir) == ("minilm", 2, True, Path("/c"))
    args = build_parser().parse_args(["serve"])
    assert args.no_auth is None and args.port is None  # unset flags leave the environment in charge
