"""The test server's `/v1/files`: uploads (multipart), file objects, contents, deletion.

Files live in memory, keyed by id. An upload is `multipart/form-data` with a `file` part and a
`purpose` part, parsed here with bounded sizes; `purpose` must be one `CreateFileRequest` allows. A
`batch` file must be named `*.jsonl` and be at most `max_bytes` (OpenAI: 200 MB), else OpenAI's 400.
Files the server writes itself (a batch's output and error files) have purpose `batch_output`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from email.message import Message
from typing import Any

from flowrunner.testing._reply import Reply, error_reply

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")  # CreateFileRequest
BATCH_FILE_DAYS = 30  # FileExpirationAfter: batch files expire after 30 days by default
_MAX_PARTS = 16
_MAX_PART_HEADERS = 8192


@dataclass(frozen=True)
class StoredFile:
    """One file: what was uploaded (or written by the server) and when."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_object(self) -> dict[str, Any]:
        """The spec's `OpenAIFile` (with the deprecated `status` it still requires)."""
        expires = self.created_at + BATCH_FILE_DAYS * 86400 if self.purpose.startswith("batch") else None
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "expires_at": expires, "filename": self.filename, "purpose": self.purpose,
                "status": "processed"}


class MultipartError(ValueError):
    """A body that is not the multipart/form-data it says it is."""


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a `multipart/form-data` body: name -> (filename or None, content).

    The body is split on its boundary in one pass (no quadratic scanning); at most 16 parts, each
    with at most 8 KiB of headers. The first part of a name wins.
    """
    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        raise MultipartError(f"expected Content-Type multipart/form-data, got {content_type!r}")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 200:
        raise MultipartError("the multipart/form-data Content-Type has no boundary")
    pieces = body.split(b"--" + boundary.encode("latin-1"))
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise MultipartError("the multipart body does not end with its closing boundary")
    if len(pieces) - 2 > _MAX_PARTS:
        raise MultipartError(f"the multipart body has more than {_MAX_PARTS} parts")
    parts: dict[str, tuple[str | None, bytes]] = {}
    for piece in pieces[1:-1]:
        if not piece.startswith(b"\r\n") or not piece.endswith(b"\r\n"):
            raise MultipartError("a multipart part is not framed by CRLF")
        head, found, content = piece[2:-2].partition(b"\r\n\r\n")
        if not found:
            head, content = piece[2:-2].removesuffix(b"\r\n\r\n"), b""
            if head == piece[2:-2]:
                raise MultipartError("a multipart part has no blank line after its headers")
        if len(head) > _MAX_PART_HEADERS:
            raise MultipartError("a multipart part's headers are too long")
        disposition = next((line.split(b":", 1)[1].strip().decode("latin-1")
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-disposition:")), None)
        if disposition is None:
            raise MultipartError("a multipart part has no Content-Disposition header")
        fields = Message()
        fields["content-disposition"] = disposition
        name = fields.get_param("name", header="content-disposition")
        filename = fields.get_param("filename", header="content-disposition")
        if not isinstance(name, str):
            raise MultipartError("a multipart part's Content-Disposition has no name")
        parts.setdefault(name, (filename if isinstance(filename, str) else None, content))
    return parts


class FileStore:
    """Files by id, in the order they were made; not thread-safe (its owner holds a lock)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.files: dict[str, StoredFile] = {}
        self._ids = itertools.count(1)

    def add(self, filename: str, purpose: str, data: bytes, now: float) -> StoredFile:
        """Store a file under a new id (deterministic: the n-th file of a server has the same id)."""
        digest = hashlib.sha256(f"flowrunner-file-{next(self._ids)}".encode()).hexdigest()
        stored = StoredFile("file-" + digest[:24], filename, purpose, data, int(now))
        self.files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | Reply:
        """The file, or OpenAI's 404 for an id it does not know."""
        return self.files.get(file_id) or error_reply(404, f"No such File object: {file_id[:100]}", param="id")

    def upload(self, content_type: str, body: bytes, now: float) -> StoredFile | Reply:
        """A new file from an upload, or OpenAI's 400 saying what is wrong with it."""
        try:
            parts = parse_multipart(content_type, body)
        except MultipartError as exc:
            return error_reply(400, f"Could not parse the multipart/form-data body: {exc}.")
        if "file" not in parts:
            return error_reply(400, "Missing required parameter: 'file'.", param="file")
        if "purpose" not in parts:
            return error_reply(400, "Missing required parameter: 'purpose'.", param="purpose")
        purpose = parts["purpose"][1].decode("utf-8", errors="replace")
        if purpose not in PURPOSES:
            return error_reply(400, f"Invalid value for 'purpose': {purpose[:100]!r}. Supported values "
                               f"are: {', '.join(repr(p) for p in PURPOSES)}.", param="purpose")
        filename, data = parts["file"]
        filename = (filename or "upload")[:255]
        if purpose == "batch":
            if not filename.endswith(".jsonl"):
                return error_reply(400, f"Invalid file format for Batch API. Must be .jsonl, got "
                                   f"{filename!r}.", param="file")
            if len(data) > self.max_bytes:
                return too_large(len(data), self.max_bytes)
        return self.add(filename, purpose, data, now)

    def delete(self, file_id: str) -> dict[str, Any] | Reply:
        """The spec's `DeleteFileResponse`, or the 404."""
        if self.files.pop(file_id, None) is None:
            return error_reply(404, f"No such File object: {file_id[:100]}", param="id")
        return {"id": file_id, "object": "file", "deleted": True}

    def listing(self, purpose: str | None, limit: int, order: str, after: str | None) -> dict[str, Any]:
        """The spec's `ListFilesResponse`, newest first unless `order` is `asc`."""
        files = [f for f in self.files.values() if purpose is None or f.purpose == purpose]
        if order != "asc":
            files.reverse()
        if after is not None:
            index = next((i for i, f in enumerate(files) if f.id == after), None)
            files = files[index + 1:] if index is not None else []
        page = [f.to_object() for f in files[:limit]]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else "",
                "last_id": page[-1]["id"] if page else "", "has_more": len(files) > limit}


def too_large(size: int, limit: int) -> Reply:
    """OpenAI's 400 for a batch input file over the size limit."""
    return error_reply(400, f"File is too large: {size} bytes; the Batch API accepts .jsonl files of "
                       f"up to {limit} bytes. Split the requests into several files.", param="file")
