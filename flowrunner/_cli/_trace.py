"""`--trace` and the OpenTelemetry variables: whether runs are traced, and `maybe_trace` after each run.

Nothing here imports OpenTelemetry: `flowrunner.tracing` is imported only when tracing is on.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from .._exceptions import UsageError

if TYPE_CHECKING:
    from .._model import Flow
    from .._record import RunRecord, StepRecord

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
INSTALL = "pip install 'flowrunner[otel]'"
_print_lock = threading.Lock()


def add_trace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", action="store_true",
                        help="send an OpenTelemetry trace of each run over OTLP/HTTP to $OTEL_EXPORTER_OTLP_ENDPOINT "
                             "(default: http://localhost:4318); on by itself when that variable is set; needs "
                             f"{INSTALL}")


def wanted(args: argparse.Namespace) -> bool:
    """--trace, or an OTLP endpoint in the environment (unless OTEL_SDK_DISABLED=true)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(getattr(args, "trace", False)) or any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def prepare_tracing(args: argparse.Namespace) -> None:
    """Before the command runs: `args.tracer` is a RunTracer when tracing is on, else None.

    --trace without the `otel` extra is a usage error (said before any request); the variables alone
    are a warning, as they may be set for other programs."""
    args.tracer = None
    if not hasattr(args, "trace") or not wanted(args):
        return
    try:
        from ..tracing import RunTracer
    except ImportError as exc:
        if args.trace:
            raise UsageError(f"--trace needs OpenTelemetry, which is not installed ({exc.name or exc})\n"
                             f"  hint: {INSTALL}") from None
        variable = next(name for name in ENDPOINT_VARIABLES if os.environ.get(name))
        print(f"warning: {variable} is set, but OpenTelemetry is not installed: no trace is sent\n"
              f"  hint: {INSTALL}", file=sys.stderr)
        return
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(variable, "").strip()
        if protocol and protocol != "http/protobuf":
            print(f"warning: {variable}={protocol}: flowrunner sends traces as OTLP over HTTP (http/protobuf) "
                  "only, to port 4318 by default, not 4317 (gRPC)", file=sys.stderr)
            break
    key = os.environ.get("OPENAI_API_KEY")
    base_url = getattr(args, "base_url", None) or ("https://api.openai.com/v1" if key else None)
    args.tracer = RunTracer(base_url=base_url)


def maybe_trace(record: RunRecord | None, flow: Flow | None, args: argparse.Namespace) -> None:
    """After a run: send its trace when tracing is on. Never raises; a failure is one warning per command."""
    tracer: Any = getattr(args, "tracer", None)
    if tracer is None or record is None:
        return
    try:
        warning = tracer.trace(record, flow)
    except Exception as exc:  # noqa: BLE001 - a trace is never worth a run
        warning = f"could not build the trace: {type(exc).__name__}: {exc}"
    if warning:
        from .._secrets import redact

        with _print_lock:
            print(f"warning: {redact(warning)}", file=sys.stderr)


def maybe_trace_turn(turn: StepRecord, flow: Flow, inputs: dict[str, Any], args: argparse.Namespace,
                     error: BaseException | None = None) -> None:
    """A chat turn as a run of one step (a trace per turn) of the chat's flow; `error`: why it failed."""
    if getattr(args, "tracer", None) is None:
        return
    from .._record import RunRecord

    record = RunRecord(flow=flow.name, file=str(flow.path), inputs=inputs, status=turn.status, steps=[turn],
                       usage=dict(turn.usage))
    if error is None:
        record.outputs = {turn.id: turn.content or ""}
    else:
        record.error = {"type": type(error).__name__, "message": str(error), "step": turn.id}
    for name in ("started", "duration", "cost"):
        if hasattr(turn, name) and hasattr(record, name):
            setattr(record, name, getattr(turn, name))
    maybe_trace(record, flow, args)
