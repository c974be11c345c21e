"""Server-sent events of a streamed chat completion, folded back into one completion.

A stream sends the message in pieces: content (or refusal) fragments, tool calls whose `arguments`
arrive in fragments keyed by `index`, a spoken answer's `audio` (transcript and base64 data in
fragments, its id and expires_at once), and (with `stream_options.include_usage`) a last chunk with
no choices and the usage. The engine handles one shape only, so the stream becomes a
`chat.completion` dict.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator


class StreamFormatError(ValueError):
    """An event whose data is not JSON, or a stream that ended without [DONE] or any chunk."""


def iter_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payload of each `data:` event, until `data: [DONE]`."""
    data: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    return
                yield _decode(payload)
            continue
        if line.startswith(":"):
            continue  # SSE comment, used by some servers as a keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        payload = "\n".join(data)
        if payload.strip() != "[DONE]":
            yield _decode(payload)


def _decode(payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except json.JSONDecodeError:
        raise StreamFormatError(f"a stream event is not JSON: {payload[:200]!r}") from None
    if not isinstance(event, dict):
        raise StreamFormatError(f"a stream event is not a JSON object: {payload[:200]!r}")
    return event


def accumulate(chunks: Iterable[dict[str, Any]],
               on_chunk: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One `chat.completion` dict built from `chat.completion.chunk` dicts (first choice only).

    `on_chunk` sees each chunk as it arrives (a live display); what it raises is its own error, never
    reported as a malformed stream.
    """
    fold = _Fold()
    try:
        for chunk in chunks:
            if on_chunk is not None and isinstance(chunk, dict):
                try:
                    on_chunk(chunk)
                except Exception as exc:  # noqa: BLE001 - the handler's own failure, not the stream's
                    raise _HandlerError() from exc
            fold.add(chunk)
        return fold.result()
    except _HandlerError as exc:
        assert exc.__cause__ is not None
        raise exc.__cause__ from None
    except StreamFormatError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise StreamFormatError(f"a stream chunk is not shaped like a chat.completion.chunk ({exc})") from None


class _HandlerError(Exception):
    """Carries what `on_chunk` raised past the check for malformed chunks."""


class _Fold:
    """The pieces of a streamed message so far."""

    def __init__(self) -> None:
        self.completion: dict[str, Any] = {"object": "chat.completion"}
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.legacy_call: dict[str, str] | None = None
        self.audio: dict[str, Any] | None = None
        self.audio_parts: dict[str, list[str]] = {"transcript": [], "data": []}
        self.role = "assistant"
        self.finish_reason: str | None = None
        self.seen = False

    def add(self, chunk: dict[str, Any]) -> None:
        self.seen = True
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                self.completion[key] = chunk[key]
        if chunk.get("usage"):
            self.completion["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            self.role = delta.get("role") or self.role
            if delta.get("content"):
                self.content.append(delta["content"])
            if delta.get("refusal"):
                self.refusal.append(delta["refusal"])
            for part in delta.get("tool_calls") or []:
                call = self.calls.setdefault(part.get("index", len(self.calls)), {
                    "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                if part.get("id"):
                    call["id"] = part["id"]
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
            if delta.get("function_call"):
                self.legacy_call = self.legacy_call or {"name": "", "arguments": ""}
                self.legacy_call["name"] += delta["function_call"].get("name") or ""
                self.legacy_call["arguments"] += delta["function_call"].get("arguments") or ""
            if delta.get("audio"):
                self._add_audio(delta["audio"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _add_audio(self, audio: dict[str, Any]) -> None:
        """OpenAI's audio models stream the transcript and the data in pieces, the id with the first data
        and `expires_at` in a last chunk of its own (which may come with no finish_reason)."""
        self.audio = self.audio or {}
        for key in ("id", "expires_at"):
            if audio.get(key) is not None:
                self.audio[key] = audio[key]
        for key, parts in self.audio_parts.items():
            if audio.get(key):
                parts.append(audio[key])

    def result(self) -> dict[str, Any]:
        if not self.seen:
            raise StreamFormatError("the stream ended before any chunk arrived")
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.content) if self.content else None}
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        if self.legacy_call:
            message["function_call"] = self.legacy_call
        if self.audio is not None:
            message["audio"] = {**self.audio, **{key: "".join(parts) for key, parts in self.audio_parts.items()}}
        return {**self.completion, "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}]}
