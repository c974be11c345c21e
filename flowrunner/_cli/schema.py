"""`flowrun schema`: print the flow JSON Schema, for editors and other tools."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK

EPILOG = """\
examples:
  flowrun schema > flow.schema.json     # a copy in your project, for editors to point at
  flowrun schema --path                 # where the installed one is

editors: put this on the first line of a flow for completion, hover help and checks in VS Code (YAML
extension by Red Hat), Neovim, Helix, JetBrains and any editor using yaml-language-server:
  # yaml-language-server: $schema=flow.schema.json
(a path relative to the flow, or a URL)
"""


def register(sub: Any) -> None:
    parser = sub.add_parser("schema", help="print the flow JSON Schema (for editors)",
                            description="Print the JSON Schema (2020-12) of flow files.", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", action="store_true", help="print the installed schema file's path instead")
    parser.set_defaults(handler=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from .._resources import schema_path

    path = schema_path("flow.schema.json")
    if args.path:
        print(path)
    else:
        sys.stdout.write(path.read_text(encoding="utf-8"))
    return EXIT_OK
