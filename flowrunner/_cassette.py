"""Cassettes: every HTTP exchange of a run recorded with vcrpy, and replayed with no network or key.

Requests match on method, path and the canonical JSON body (sorted keys), so key order and host
do not matter: a cassette recorded against a local server replays for api.openai.com. vcrpy's own
`body` matcher builds a diff for every candidate it rejects, which is slow; ours compares strings
computed once per request. vcrpy's `Cassette` also tries every recording for every request; ours
(`IndexedCassette`) looks the request up in an index of unplayed recordings, so replaying a
cassette of n interactions costs O(n), not O(n^2). What could identify the user (keys,
organisation, cookies) and version noise (user-agent, x-stainless-*) never reaches the file.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import threading
from collections import deque
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import _jsondiff as jsondiff
from ._exceptions import ConfigError
from ._jsondiff import Wording
from ._replay import replay_only
from ._secrets import redact, redact_url

RECORD_MODES = ("none", "once", "new_episodes", "all")
"""vcrpy's record modes: replay only; record a new cassette only; replay and add new; re-record all."""

_SECRET_REQUEST_HEADERS = {"authorization", "api-key", "openai-organization", "openai-project", "cookie",
                           "user-agent"}
_SECRET_RESPONSE_HEADERS = {"set-cookie", "openai-organization", "openai-project"}
_NOISE_PREFIX = "x-stainless-"
_CANON_ATTR = "_flowrunner_canonical_body"
_KEY_ATTR = "_flowrunner_match_key"
_MATCH_ON = ("method", "path", "json_body")
"""What a request must share with a recording to replay it; `IndexedCassette`'s key is exactly this."""


def canonical_json(value: Any) -> str:
    """Sorted-key compact JSON: equal for equal data whatever its key order or spacing (request matching,
    batch input keys)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_body(request: Any) -> str | None:
    """The request body as sorted-key compact JSON (raw text if not JSON); cached on the request."""
    cached: str | None = getattr(request, _CANON_ATTR, None)
    if cached is not None:
        return cached
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    boundary = _multipart_boundary(request)
    if body is not None and boundary:
        canon = str(body).replace(boundary, "BOUNDARY")  # a file upload: its parts, whatever boundary the SDK drew
    elif body is None:
        canon = ""
    else:
        try:
            # Both sides are scrubbed (secrets redacted) before they are matched: see `_scrub_request`.
            canon = canonical_json(json.loads(body))
        except (ValueError, TypeError):
            canon = str(body)
    try:
        setattr(request, _CANON_ATTR, canon)
    except AttributeError:
        pass
    return canon


def _multipart_boundary(request: Any) -> str | None:
    """The boundary of a multipart body (random per request), from its content type."""
    headers = getattr(request, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "content-type":
            text = value[0] if isinstance(value, list) and value else value
            if isinstance(text, str) and text.startswith("multipart/") and "boundary=" in text:
                return str(text.split("boundary=", 1)[1].split(";")[0].strip().strip('"')) or None
    return None


def json_body_matcher(live: Any, recorded: Any) -> None:
    """vcrpy matcher: raise AssertionError unless the two bodies are the same JSON."""
    if canonical_body(live) != canonical_body(recorded):
        raise AssertionError(first_difference(_loads(canonical_body(recorded)), _loads(canonical_body(live))))


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except ValueError:
        return text


_MISS_WORDING = Wording(only_a="{path}: recorded, now missing", only_b="{path}: new, not in the recording ({b})",
                        lengths="{path}: recorded {na} items, now {nb}", values="{path}: recorded {a}, now {b}")


def first_difference(recorded: Any, live: Any, path: str = "body") -> str:
    """Where two JSON values first differ, said briefly: `messages[1].content: recorded 'a', now 'b'`."""
    return jsondiff.first_difference(recorded, live, path, _MISS_WORDING)


def _scrub_request(request: Any) -> Any:
    request.uri = redact_url(request.uri)  # credentials in a base URL (user:password@, ?key=)
    for name in list(request.headers):
        lower = name.lower()
        if lower in _SECRET_REQUEST_HEADERS or lower.startswith(_NOISE_PREFIX):
            del request.headers[name]
        else:
            request.headers[name] = redact(request.headers[name])
    if request.body:
        from ._scrub import scrub_body  # only while recording or replaying

        request.body = scrub_body(request.body)
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in _SECRET_RESPONSE_HEADERS:
            del headers[name]
        else:
            headers[name] = [redact(v) if isinstance(v, str) else v for v in headers[name]]
    body = response.get("body", {})
    if body.get("string"):
        from ._scrub import scrub_body

        body["string"] = scrub_body(body["string"])
    return response


def _loaded_response(response: dict[str, Any]) -> dict[str, Any]:
    """A response read from a cassette through `use_cassette`'s response filters (a compressed body decoded,
    secrets scrubbed), without the deep copy vcrpy's decoding filter makes even of a body it leaves alone."""
    headers = response.get("headers")
    if isinstance(headers, dict) and any(name.lower() == "content-encoding" for name in headers):
        from vcr.filters import decode_response

        response = decode_response(response)
    return _scrub_response(response)


@contextmanager
def use_cassette(path: str | Path, record_mode: str = "once") -> Iterator[Any]:
    """Record or replay every HTTP request made inside the block (imports vcrpy only when used)."""
    if record_mode not in RECORD_MODES:
        raise ConfigError(f"unknown record mode {record_mode!r}; choose one of: {', '.join(RECORD_MODES)}")
    path = Path(path)
    _check_place(path, record_mode)
    import vcr
    import yaml

    from ._cassette_format import CheckedYamlSerializer

    recorder = vcr.VCR(
        record_mode=record_mode,
        match_on=list(_MATCH_ON),
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
        serializer="checked-yaml",
    )
    recorder.register_matcher("json_body", json_body_matcher)
    serializer = CheckedYamlSerializer()
    recorder.register_serializer("checked-yaml", serializer)
    # vcrpy's own use_cassette always builds its Cassette; Cassette.use takes the class to build.
    config = recorder.get_merged_config(path=str(path))
    with ExitStack() as stack:
        try:
            cassette = stack.enter_context(indexed_cassette_class().use(**config))
        except (yaml.YAMLError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            why = f"no {exc.args[0]!r} in it" if isinstance(exc, KeyError) else str(exc).strip().splitlines()[0]
            # Not `--record-mode all`: vcrpy reads the file in every mode, and keeps what it does not re-record.
            raise ConfigError(f"{path} is not a readable cassette: {why}\n"
                              "  hint: delete it and record it again, or point --cassette elsewhere") from None
        if cassette.write_protected:  # nothing can be sent, so nothing is paced
            stack.enter_context(replay_only())
        serializer.replay_only, serializer.record_mode = bool(cassette.write_protected), record_mode
        serializer.path = str(path)
        _active.append(serializer)  # where the MCP layer records and replays (`active_cassette`)
        stack.callback(_active.remove, serializer)
        yield cassette


_active: list[Any] = []


def active_cassette() -> Any:
    """The innermost cassette in use (its `CheckedYamlSerializer`, which keeps its MCP exchanges), or None."""
    return _active[-1] if _active else None


def check_recordable(path: Path, record_mode: str, has_server: bool, how: str) -> None:
    """ConfigError if running under `path` in `record_mode` would record but there is no server to
    record from (`how`: how this command is given one). `new_episodes` records only a miss, which
    then fails with its own error; `once` records only a missing cassette."""
    if has_server:
        return
    if record_mode == "all" or (record_mode == "once" and not path.is_file()):
        raise ConfigError(f"recording needs a server: {path} would be recorded, but OPENAI_API_KEY is not set "
                          f"and there is no base URL\n  hint: {how}; --record-mode none only replays")


def match_key(request: Any) -> tuple[str, str, str]:
    """A request's identity under the `_MATCH_ON` matchers: equal keys if and only if they match."""
    return (request.method, request.path, canonical_body(request) or "")


@functools.cache
def indexed_cassette_class() -> type[Any]:
    """`IndexedCassette`, defined on first use so that importing this module does not import vcrpy."""
    from vcr.cassette import Cassette
    from vcr.errors import UnhandledHTTPRequestError
    from vcr.record_mode import RecordMode

    class IndexedCassette(Cassette):  # type: ignore[misc]  # vcrpy is untyped
        """vcrpy's Cassette with O(1) matching: an index from `match_key` to unplayed recordings.

        It overrides the three places vcrpy scans every recording for a request (`__contains__`,
        `play_response`, and saving in record mode `all`), and keeps vcrpy's semantics: the oldest
        unplayed matching recording plays, once. A miss still goes through vcrpy's own error, which
        scans the cassette to name the closest recording (only on a miss). A lock makes play and
        append safe from the threads of a batch.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._unplayed: dict[tuple[str, str, str], deque[int]] = {}
            self._index_lock = threading.RLock()
            self._loading = False
            super().__init__(*args, **kwargs)

        def _load(self) -> None:
            from ._cassette_format import paused_gc

            self._loading = True
            try:
                with paused_gc():  # see `paused_gc`: reading makes many objects and no garbage
                    super()._load()
            finally:
                self._loading = False

        def append(self, request: Any, response: Any) -> None:
            with self._index_lock:
                before = len(self.data)
                if self._loading:
                    self._append_loaded(request, response)
                else:
                    super().append(request, response)
                if len(self.data) > before:
                    self._unplayed.setdefault(match_key(self.data[-1][0]), deque()).append(before)

        def _append_loaded(self, request: Any, response: Any) -> None:
            """A recording just read from the file, filtered as vcrpy's `append` filters it (`use_cassette`'s
            filters: secrets scrubbed, a compressed body decoded) but without its deep copies of the request
            and the response, which cost half of reading a cassette: nothing else holds what was just read."""
            self.data.append((_scrub_request(request), _loaded_response(response)))

        def _live_key(self, request: Any) -> tuple[str, str, str]:
            """The `match_key` of a live request as it would be recorded (filtered), cached on it: vcrpy's
            stub asks `can_play_response_for`, which asks `__contains__`, then `play_response`, each of
            which would copy and filter the request again."""
            key: tuple[str, str, str] | None = getattr(request, _KEY_ATTR, None)
            if key is None:
                key = match_key(self._before_record_request(request))
                try:
                    setattr(request, _KEY_ATTR, key)
                except AttributeError:
                    pass
            return key

        def can_play_response_for(self, request: Any) -> bool:
            if self.allow_playback_repeats:
                return bool(super().can_play_response_for(request))
            return self.record_mode != RecordMode.ALL and bool(self.rewound) and request in self

        def __contains__(self, request: Any) -> bool:
            if self.allow_playback_repeats:
                return bool(super().__contains__(request))
            key = self._live_key(request)
            with self._index_lock:
                return bool(self._unplayed.get(key))

        def play_response(self, request: Any) -> Any:
            if self.allow_playback_repeats:
                return super().play_response(request)
            key = self._live_key(request)
            with self._index_lock:
                waiting = self._unplayed.get(key)
                if not waiting:
                    raise UnhandledHTTPRequestError(
                        f"The cassette ({self._path!r}) doesn't contain the request ({request!r}) asked for")
                index = waiting.popleft()
                if index < self._loaded_count:  # as vcrpy does, for drop_unused_requests
                    self._played_interactions.append(self.data[index])
                self.play_counts[index] += 1
                return self.data[index][1]

        def rewind(self) -> None:
            with self._index_lock:
                super().rewind()
                self._unplayed = {}
                for index, (request, _) in enumerate(self.data):
                    self._unplayed.setdefault(match_key(request), deque()).append(index)

        def _rerecorded_interactions(self) -> list[tuple[Any, Any]]:
            """Record mode `all`: recordings made now replace the loaded ones they match (by key)."""
            loaded, recorded = self.data[: self._loaded_count], self.data[self._loaded_count:]
            if self.drop_unused_requests:
                return list(recorded)
            fresh = {match_key(request) for request, _ in recorded}
            return [pair for pair in loaded if match_key(pair[0]) not in fresh] + list(recorded)

    return IndexedCassette


def _check_place(path: Path, record_mode: str) -> None:
    """Problems with the cassette's path, found before any request rather than when saving after the run."""
    if path.is_dir():
        raise ConfigError(f"cassette {path} is a directory; give the path of a .yaml file")
    if record_mode == "none":
        if not path.is_file():
            raise ConfigError(f"cassette {path} does not exist, and record mode 'none' only replays\n"
                              "  hint: record it against a server with --record-mode once")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the cassette's folder {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write cassette {path}: permission denied")


RUN_HINT = ("  hint: the flow or its inputs changed since recording: run live (OPENAI_API_KEY or "
            "--base-url), or re-record with --record-mode new_episodes (keeps the rest) or all")

EMPTY_HINT = ("  hint: record it against a server: --record-mode all, with OPENAI_API_KEY set or --base-url "
              "(e.g. the test server, `python -m flowrunner.testing.server`)")

_DIFF_LINES = 40


def describe_miss(exc: Any, hint: str = RUN_HINT) -> str:
    """A vcrpy CannotOverwriteExistingCassetteException, said for a flow's user: which request, and how
    it differs from the closest recording (first difference, then a diff of the two bodies)."""
    cassette = getattr(exc, "cassette", None)
    where = getattr(cassette, "_path", "the cassette")
    mode = getattr(getattr(cassette, "record_mode", None), "value", "none")
    request = getattr(exc, "failed_request", None)
    lines = [f"the request is not in cassette {where} (record mode {mode!r})"]
    if request is not None:
        lines.append(f"  request: {request.method} {request.path}")
    if cassette is not None and not getattr(cassette, "data", True):
        # Nothing recorded (an empty file, say): nothing changed since a recording; it was never made.
        lines.append("  the cassette is empty: it holds no recording at all")
        return "\n".join(lines + [EMPTY_HINT])
    if getattr(exc, "reason", "") == "already_played":
        lines.append("  every recording that matches it was already played in this run")
    similar = [recorded for recorded, _, failed in (getattr(exc, "similar_requests", None) or []) if failed]
    closest = _closest(request, similar) if request is not None else None
    if closest is not None:
        recorded, live = _loads(canonical_body(closest)), _loads(canonical_body(request))
        number = _position(cassette, closest)
        lines.append(f"  closest recording{number} differs in the body: {first_difference(recorded, live)}")
        diff = body_diff(recorded, live)
        if diff:
            lines.append("  diff of the bodies (- recorded, + this run):")
            lines.extend(f"    {line}" for line in diff)
    elif getattr(exc, "reason", "") in ("nothing_similar", "no_match"):
        lines.append("  no recording has the same method and path")
    lines.append(hint)
    return "\n".join(lines)


def _closest(request: Any, candidates: list[Any]) -> Any:
    """The candidate whose body is most like the request's (difflib's ratio on the pretty JSON)."""
    if not candidates:
        return None
    live = _pretty(_loads(canonical_body(request)))
    return max(candidates, key=lambda c: difflib.SequenceMatcher(None, _pretty(_loads(canonical_body(c))),
                                                                  live, autojunk=False).ratio())


def _position(cassette: Any, request: Any) -> str:
    """` (request 2 of 3)`, when the cassette says where the recording is."""
    try:
        requests = list(cassette.requests)
        return f" (request {requests.index(request) + 1} of {len(requests)})"
    except (AttributeError, ValueError, TypeError):
        return ""


def _pretty(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.splitlines()
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def body_diff(recorded: Any, live: Any, limit: int = _DIFF_LINES) -> list[str]:
    """A unified diff of two JSON bodies, pretty-printed with sorted keys, one line of context."""
    return jsondiff.diff_lines(recorded, live, context=1, width=160, limit=limit)
