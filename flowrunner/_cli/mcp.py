"""`flowrun mcp serve FLOW_OR_FOLDER...`: serve flows as MCP tools (flowrunner/mcp/serve.py does the work)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from .._exceptions import FlowValidationError, UsageError
from ._common import EXIT_OK, EXIT_USAGE, add_run_options, count, print_problems

if TYPE_CHECKING:
    from .._model import Flow
    from .._record import RunRecord

SERVE_EPILOG = """\
each flow becomes one tool: its name (letters, digits, _ and -), its description, its inputs as the
input schema (env: inputs are not exposed: this process's environment gives them); a call runs the
flow and answers with its outputs (text, and structuredContent with the outputs). A failed run or bad
arguments are an isError result.

which server the flows talk to: as `flowrun run` decides (see `flowrun run --help`): OPENAI_API_KEY
or --base-url runs live; with neither, each flow replays its own cassette (a flow without one is
skipped). Calls run concurrently, except with a cassette, which is used by one run at a time.

stdout is the protocol (stdio); everything else goes to stderr.

examples:
  flowrun mcp serve flows/weather.yaml                     # stdio; replays its cassette
  flowrun mcp serve flows/ --base-url http://127.0.0.1:8765/v1
  flowrun mcp serve flows/ --http 8000                     # http://127.0.0.1:8000/mcp

in an MCP client's configuration (Claude Desktop, an IDE):
  {"mcpServers": {"flows": {"command": "flowrun",
                            "args": ["mcp", "serve", "/path/to/flows"],
                            "env": {"OPENAI_API_KEY": "sk-..."}}}}

exit status: 0 stopped, 2 no valid flow, a tool name two flows share, or usage.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser("mcp", help="serve flows as MCP tools (`flowrun mcp serve FLOW...`)",
                            description="Model Context Protocol: serve flows as tools for MCP clients.")
    commands = parser.add_subparsers(dest="mcp_command", metavar="COMMAND", required=True)
    serve = commands.add_parser("serve", help="serve flows as MCP tools, over stdio or streamable HTTP",
                                description="Serve each flow as an MCP tool, over stdio (the default) or "
                                            "streamable HTTP on 127.0.0.1.",
                                epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("flows", metavar="FLOW_OR_FOLDER", nargs="+",
                       help="flow files, or folders to search for them (invalid flows are skipped, with a warning)")
    serve.add_argument("--http", type=port, metavar="PORT",
                       help="serve streamable HTTP at http://127.0.0.1:PORT/mcp instead of stdio "
                            "(0: a free port, said on stderr)")
    add_run_options(serve, inputs=False)
    serve.set_defaults(handler=cmd_serve)


def port(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    if args.inputs:
        raise UsageError("-i: a served flow's inputs are the arguments of each tool call")
    from ..mcp import require_sdk

    require_sdk("flowrun mcp serve")
    live = bool(os.environ.get("OPENAI_API_KEY") or args.base_url)
    replaying = not live and args.cassette is None and args.record_mode is None
    flows = load_flows(args.flows, replaying)
    if not flows:
        print(f"error: no valid flow to serve in {', '.join(args.flows)}", file=sys.stderr)
        return EXIT_USAGE

    from ..mcp.serve import FlowServer, flow_tools, listen, serve_http, serve_stdio

    tools = flow_tools(flows)
    server = FlowServer(tools, flow_runner(args, one_at_a_time=not live or args.cassette is not None
                                           or args.record_mode is not None),
                        log=lambda line: print(f"mcp: {line}", file=sys.stderr, flush=True))
    names = ", ".join(tool.name for tool in tools)
    if args.http is None:
        print(f"mcp: serving {count(len(tools), 'tool')} ({names}) over stdio", file=sys.stderr, flush=True)
        serve_stdio(server)
        return EXIT_OK
    sock = listen(args.http)
    print(f"mcp: serving {count(len(tools), 'tool')} ({names}) at "
          f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
    serve_http(server, sock)
    return EXIT_OK


def load_flows(paths: list[str], replaying: bool) -> list[Flow]:
    """The valid flows among `paths`; each one skipped is said on stderr, with where its problems are."""
    from .._flowtest import find_flows
    from .._loader import load_flow
    from .._model import MISSING

    found = find_flows(paths)  # a path that does not exist: FlowValidationError, exit 2
    flows = []
    for path in found:
        try:
            flow = load_flow(path)
        except FlowValidationError as exc:
            print(f"warning: skipping {path}: not a valid flow", file=sys.stderr)
            print_problems(exc)
            continue
        if replaying and not flow.default_cassette.is_file():
            print(f"warning: skipping {path}: OPENAI_API_KEY is not set, no --base-url, and there is no "
                  f"cassette at {flow.default_cassette} to replay", file=sys.stderr)
            continue
        for name, spec in flow.inputs.items():
            if spec.env is not None and spec.default is MISSING and os.environ.get(spec.env) is None:
                print(f"warning: {path}: input {name!r} comes from the environment variable {spec.env}, which is "
                      "not set: calls will fail", file=sys.stderr)
        flows.append(flow)
    return flows


def flow_runner(args: argparse.Namespace, one_at_a_time: bool) -> Any:
    """`run_flow(flow, inputs)` as `flowrun run` would run it; runs that use a cassette (a process-wide
    patch of the HTTP client) take turns."""
    from ._common import connection, show_call
    from ._trace import maybe_trace

    turn = threading.Lock() if one_at_a_time else contextlib.nullcontext()

    def run_flow(flow: Flow, inputs: dict[str, Any]) -> RunRecord:
        from .._engine import Engine

        with turn, connection(flow, args) as transport:
            engine = Engine(transport, model=args.model, on_event=show_call, rate_limit=args.rate_limit)
            record = engine.run(flow, inputs)
        maybe_trace(record, flow, args)  # a trace per tool call, with --trace or the OTLP variables
        return record

    return run_flow
