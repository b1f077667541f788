"""MkDocs hook: the CLI reference is rendered from the command's own parser."""

from __future__ import annotations

import os

MARKER = "<!-- cli-help -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    from toolkit.cli import _parser

    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal: a fixed width

    parser = _parser()
    parts = [f"## `iot-toolkit`\n\n```text\n{parser.format_help()}```\n"]
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            parts.append(f"## `iot-toolkit {name}`\n\n```text\n{sub.format_help()}```\n")
    return markdown.replace(MARKER, "\n".join(parts))
