"""Reading the scenarios' inputs: txt, md, jsonl, csv and tsv files into :class:`Document` records.

Two readings of a file:

- :func:`read_documents` (search, knowledge base): a ``.txt``/``.md`` file is ONE document (id = its
  path); a ``.jsonl``/``.csv``/``.tsv`` file is one document per row. Folders are walked recursively.
- :func:`read_records` (clustering, recommendation, anomaly detection): a ``.txt``/``.md`` file is one
  record per non-empty line (id = the line number); tables as above, but a row without an id column
  gets its row number (1 = the first row after any header).

In a table, the text is the ``text_field`` column (default: the first of ``text``, ``content``,
``body``, ``passage``, ``sentence``, ``title``), the id the ``id_field`` column (default: the first of
``_id``, ``id``, ``doc_id``, ``item_id``; else ``<file>#<line>``) and every other scalar column becomes
metadata. ``.tsv`` files are read without quoting (the evaldata convention), ``.csv`` files with it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT_EXTENSIONS = (".txt", ".md", ".markdown")
TABLE_EXTENSIONS = (".jsonl", ".csv", ".tsv")
EXTENSIONS = TEXT_EXTENSIONS + TABLE_EXTENSIONS
TEXT_FIELDS = ("text", "content", "body", "passage", "sentence", "title")
ID_FIELDS = ("_id", "id", "doc_id", "item_id")


class DocumentError(ValueError):
    """A file that cannot be read as documents."""


@dataclass
class Document:
    id: str
    text: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _pick(fields: Iterable[str], wanted: str | None, defaults: tuple[str, ...], what: str, path: Path) -> str | None:
    names = list(fields)
    if wanted is not None:
        if wanted not in names:
            raise DocumentError(f"{path}: no {what} field {wanted!r} (fields: {', '.join(names)})")
        return wanted
    return next((name for name in defaults if name in names), None)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as f:
        if suffix == ".jsonl":
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DocumentError(f"{path}:{lineno}: not JSON: {exc}") from None
                    if not isinstance(row, dict):
                        raise DocumentError(f"{path}:{lineno}: a JSON object per line is needed")
                    yield lineno, row
        else:
            if suffix == ".tsv":
                reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = csv.DictReader(f)
            for rowno, row in enumerate(reader, 2):
                yield rowno, dict(row)


def read_table(
    path: Path, *, text_field: str | None = None, id_field: str | None = None, row_ids: bool = False
) -> Iterator[Document]:
    """One :class:`Document` per row of a ``.jsonl``, ``.csv`` or ``.tsv`` file (empty texts skipped).

    Without an id column a row's id is ``<file>#<line>``, or with ``row_ids`` its 1-based row number.
    """
    path = Path(path)
    source = str(path.resolve())
    text_key: str | None = None
    id_key: str | None = None
    first = True
    for number, (rowno, row) in enumerate(_rows(path), 1):
        if first:
            text_key = _pick(row, text_field, TEXT_FIELDS, "text", path)
            if text_key is None:
                raise DocumentError(f"{path}: no text field among {', '.join(row)}; name one with --text-field")
            id_key = _pick(row, id_field, ID_FIELDS, "id", path)
            first = False
        assert text_key is not None
        text = str(row.get(text_key) or "").strip()
        if not text:
            continue
        if id_key is not None and row.get(id_key) not in (None, ""):
            doc_id = str(row[id_key])
        else:
            doc_id = str(number) if row_ids else f"{source}#{rowno}"
        meta = {k: v for k, v in row.items() if k not in (text_key, id_key) and isinstance(v, str | int | float | bool)}
        yield Document(doc_id, text, source, meta)


def _walk(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(
                f
                for f in path.rglob("*")
                if f.is_file() and f.suffix.lower() in EXTENSIONS and not f.name.startswith(".")
            )
        elif path.is_file():
            yield path
        else:
            raise DocumentError(f"{path} does not exist")


def read_documents(
    paths: Iterable[str | Path], *, text_field: str | None = None, id_field: str | None = None
) -> Iterator[Document]:
    """Documents of files and folders: a text/markdown file is one document, a table one per row."""
    for path in _walk(paths):
        suffix = path.suffix.lower()
        if suffix in TABLE_EXTENSIONS:
            yield from read_table(path, text_field=text_field, id_field=id_field)
        elif suffix in TEXT_EXTENSIONS or suffix == "":
            text = path.read_text(encoding="utf-8").strip()
            if text:
                source = str(path.resolve())
                yield Document(source, text, source, {"title": _title(text, path)})
        else:
            raise DocumentError(f"{path}: unsupported file type (use {', '.join(EXTENSIONS)})")


def _title(text: str, path: Path) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.lstrip("#").strip()[:200] if line.startswith("#") else path.name
    return path.name


def read_records(path: str | Path, *, text_field: str | None = None, id_field: str | None = None) -> list[Document]:
    """Records of one file: a line per record for text files, a row per record for tables."""
    path = Path(path)
    if not path.is_file():
        raise DocumentError(f"{path} does not exist")
    if path.suffix.lower() in TABLE_EXTENSIONS:
        return list(read_table(path, text_field=text_field, id_field=id_field, row_ids=True))
    source = str(path.resolve())
    with path.open(encoding="utf-8") as f:
        return [Document(str(i), line.strip(), source) for i, line in enumerate(f, 1) if line.strip()]


__all__ = ["EXTENSIONS", "Document", "DocumentError", "read_documents", "read_records", "read_table"]
