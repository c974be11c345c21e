"""The Batch API's files and batches through the official `openai` SDK, its errors translated to ours.

Every answer is read raw and parsed with `_json.loads` (the server's bytes are outside data), and
only the fields the job acts on are taken, checked. A batch's output and error files are read
line by line as they arrive, each line bounded, so a huge or hostile file costs no more memory
than one line. Creating a batch is never retried by the SDK: a create whose answer was lost may
still have made the batch, and the job reconciles that itself (see `BatchClient.find`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .._exceptions import APIConnectionError, APIError, ResponseError
from .._json import JSONError, loads
from .._secrets import register, register_url
from .._transport import connection_error, status_error
from .._urls import check_base_url

ENDPOINT = "/v1/chat/completions"
MAX_LINE_BYTES = 64 * 1024 * 1024
"""The longest output line read: an answer is far smaller; a longer one is the server's fault."""
_LIST_PAGES = 20  # batches.list pages (100 each) searched for a lost create: the newest 2,000 batches


@dataclass(frozen=True)
class BatchState:
    """What the job needs of a `Batch` object."""

    id: str
    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    errors: tuple[str, ...]
    """`errors.data[]` as lines: `code: message (line N)`; a failed batch says why here."""
    metadata: dict[str, str]

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


def batch_state(data: Any) -> BatchState:
    """A Batch object from the server, checked; ResponseError if it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("status"), str):
        raise ResponseError(f"the server's answer is not a batch: {str(data)[:200]!r}")
    counts: dict[str, Any] = data["request_counts"] if isinstance(data.get("request_counts"), dict) else {}
    errors = []
    raw_errors = data.get("errors")
    for item in (raw_errors.get("data") or []) if isinstance(raw_errors, dict) else []:
        if isinstance(item, dict):
            where = f" (line {item['line']})" if isinstance(item.get("line"), int) else ""
            errors.append(f"{item.get('code')}: {str(item.get('message'))[:500]}{where}")
    metadata: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    return BatchState(id=data["id"], status=data["status"], total=_count(counts.get("total")),
                      completed=_count(counts.get("completed")), failed=_count(counts.get("failed")),
                      output_file_id=_id(data.get("output_file_id")), error_file_id=_id(data.get("error_file_id")),
                      errors=tuple(errors[:20]), metadata={str(k): str(v) for k, v in metadata.items()})


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class BatchClient:
    """Files and batches on one OpenAI-compatible server."""

    def __init__(self, *, base_url: str | None, api_key: str | None, timeout: float = 600.0):
        check_base_url(base_url)
        register(api_key, "OPENAI_API_KEY")
        register_url(base_url)
        self.base_url = base_url
        self._api_key = api_key
        self.timeout = timeout
        self._client: Any = None

    def _sdk(self) -> Any:
        if self._client is None:
            import openai

            # The SDK retries its idempotent calls (timeouts, 5xx, 429) itself; `create` opts out below.
            self._client = openai.OpenAI(api_key=self._api_key or "no-key", base_url=self.base_url,
                                         timeout=self.timeout, max_retries=3)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, what: str, action: Callable[[Any], Any]) -> Any:
        """`action(sdk)`'s raw response parsed as JSON; our exceptions for the SDK's."""
        raw = self._guarded(what, action)
        try:
            return loads(raw.http_response.content)
        except JSONError as exc:
            raise ResponseError(f"{what}: the server's answer is not JSON ({exc.msg})") from None

    def _guarded(self, what: str, action: Callable[[Any], Any]) -> Any:
        try:
            return action(self._sdk())
        except Exception as exc:
            failure = self._failure(exc, what)
            if failure is None:
                raise
            raise failure from None

    def _failure(self, exc: Exception, what: str) -> BaseException | None:
        """The flowrunner error that an SDK or HTTP failure while `what` is (its message says what was being
        done); `exc` itself when it is one of ours already; None when it is no such failure (a bug)."""
        import openai

        from .._transport import _http_failure, cassette_miss

        if isinstance(exc, (APIError, ResponseError, APIConnectionError)):
            return exc
        failure: BaseException | None
        if isinstance(exc, openai.APIStatusError):
            failure = status_error(exc.status_code, exc.body, exc.response.headers.get("x-request-id"), exc.message,
                                   {k.lower(): v for k, v in exc.response.headers.items()})
        elif isinstance(exc, openai.APIConnectionError):
            failure = connection_error(exc, self.base_url)
        else:
            miss = cassette_miss(exc)
            if miss is not None:
                return miss
            failure = _http_failure(exc, self.timeout)  # the HTTP library's own error, e.g. a body cut short
        if failure is not None:
            failure.args = (f"{what}: {failure}",)
        return failure

    def upload(self, name: str, content: bytes) -> str:
        """Upload a batch input file (`purpose: batch`); its file id."""
        data = self._call("uploading a batch file", lambda sdk: sdk.files.with_raw_response.create(
            file=(name, content, "application/jsonl"), purpose="batch"))
        file_id = _id(data.get("id") if isinstance(data, dict) else None)
        if file_id is None:
            raise ResponseError(f"uploading a batch file: the answer has no file id: {str(data)[:200]!r}")
        return file_id

    def create(self, file_id: str, tag: str) -> BatchState:
        """Start a batch on an uploaded file, tagged `metadata.flowrun_wave = tag`; never retried."""
        data = self._call("creating a batch", lambda sdk: sdk.with_options(max_retries=0).batches.with_raw_response
                          .create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h",
                                  metadata={"flowrun_wave": tag}))
        return batch_state(data)

    def retrieve(self, batch_id: str) -> BatchState:
        return batch_state(self._call("checking a batch", lambda sdk: sdk.batches.with_raw_response.retrieve(batch_id)))

    def cancel(self, batch_id: str) -> BatchState:
        return batch_state(self._call("cancelling a batch", lambda sdk: sdk.batches.with_raw_response.cancel(batch_id)))

    def find(self, tag: str) -> BatchState | None:
        """The batch created with this tag, if any: after a crash between asking to create one and saving
        its id, this says whether it was made (so it is never made twice)."""
        after: str | None = None
        for _ in range(_LIST_PAGES):
            kwargs: dict[str, Any] = {"limit": 100}
            if after is not None:
                kwargs["after"] = after
            page = self._call("listing batches", lambda sdk: sdk.batches.with_raw_response.list(**kwargs))
            items = page.get("data") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise ResponseError(f"listing batches: the answer has no list: {str(page)[:200]!r}")
            for item in items:
                state = batch_state(item)
                if state.metadata.get("flowrun_wave") == tag:
                    return state
            if not (isinstance(page, dict) and page.get("has_more") is True and items):
                return None
            last = items[-1]
            after = last.get("id") if isinstance(last, dict) else None
            if not isinstance(after, str):
                return None
        return None

    def lines(self, file_id: str) -> Iterator[Any]:
        """A result file's lines, parsed (a line that is not JSON is yielded as the JSONError saying so)."""
        what = "downloading batch results"
        try:
            with self._sdk().files.with_streaming_response.content(file_id) as response:
                pending = b""
                for piece in response.iter_bytes():
                    pending += piece
                    *whole, pending = pending.split(b"\n")
                    if len(pending) > MAX_LINE_BYTES:
                        raise ResponseError(f"{what}: a line of file {file_id} is longer than "
                                            f"{MAX_LINE_BYTES:,} bytes")
                    for raw in whole:
                        if raw.strip():
                            yield _line(raw)
                if pending.strip():
                    yield _line(pending)
        except Exception as exc:
            failure = self._failure(exc, what)
            if failure is None:
                raise
            raise failure from None

    def delete(self, file_id: str) -> None:
        """Delete a file; one already gone is no error."""
        try:
            self._guarded("deleting a batch file", lambda sdk: sdk.files.with_raw_response.delete(file_id))
        except APIError as exc:
            if exc.status != 404:
                raise


def _line(raw: bytes) -> Any:
    try:
        return loads(raw)
    except JSONError as exc:
        return exc
