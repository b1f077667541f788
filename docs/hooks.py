"""MkDocs hooks: the CLI reference rendered from the command's own parser, and Sphinx
roles in the docstrings shown as plain code."""

from __future__ import annotations

import os
import re

MARKER = "<!-- cli-help -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    from toolkit.cli import _parser

    os.environ["COLUMNS"] = "74"  # argparse wraps to the terminal: a fixed width

    parser = _parser()
    parts = [f"## `iot-toolkit`\n\n```text\n{parser.format_help()}```\n"]
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            parts.append(f"## `iot-toolkit {name}`\n\n```text\n{sub.format_help()}```\n")
    return markdown.replace(MARKER, "\n".join(parts))


#: a Sphinx role as it reaches the page: ``:func:`x``` renders as ":func:<code>x</code>"
_ROLE = re.compile(r":(?:func|mod|class|meth|attr|data|obj|exc):(<code>)")


def on_page_content(html, page, config, files):
    """The docstrings name objects with Sphinx roles (``:func:`...```), which the
    numpydoc style allows; in the API pages they become plain code spans."""
    return _ROLE.sub(r"\1", html)
