"""`flowrun view`: serve the run history as web pages on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import EXIT_OK

EPILOG = """\
examples:
  flowrun view                      # a free port; opens the browser when there is a display
  flowrun view --port 8700 --no-browser
  flowrun view --db other/history.db

The pages: the runs list (filter, sort, search, pick two to compare), a run as a timeline (steps,
rounds and function calls as bars; rate-limit and retry waits shaded; click a round for its details),
and two runs side by side. Only this machine can connect (127.0.0.1), and only with the URL printed:
it carries a random token, as Jupyter's does. The history is opened read-only.

exit status: 0 stopped with Ctrl-C, 2 no history or the port is taken.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser("view", help="browse the run history in a web page (timelines, diffs)",
                            description="Serve the run history as web pages on 127.0.0.1.", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=_port, default=0, help="port to serve on (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")
    parser.add_argument("--db", type=Path, metavar="PATH", help="the history database (default: `flowrun runs path`)")
    parser.set_defaults(handler=cmd_view)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0 or none: a free one)")
    return port


def cmd_view(args: argparse.Namespace) -> int:
    from ..view._app import can_open_browser, history_server

    server = history_server(args.db, port=args.port)
    print(f"flowrun view: serving {server.source} (read-only) at\n  {server.url}\n(Ctrl-C stops it)", flush=True)
    if not args.no_browser and can_open_browser():
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.close()
    return EXIT_OK
