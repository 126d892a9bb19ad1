"""mkdocs hook: the Sphinx roles of docstrings (``:class:`~openpista.Tool```), which the API
reference would show as they are, become code linking to the entry the name has on the
page: its full path, else the one entry ending in that name (``openpista.Tool`` is
documented as ``openpista.tools.base.Tool``). ``~`` shows the last part only, as in Sphinx;
a name without an entry on the page stays plain code."""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):<code>(~?)([\w.]+)</code>")
ANCHOR = re.compile(r'\bid="([\w.]+)"')


def on_page_content(html: str, **_: Any) -> str:
    """Replace every rendered role of the page."""
    anchors = set(ANCHOR.findall(html))

    def link(match: re.Match[str]) -> str:
        short, path = match[1], match[2]
        shown = f"<code>{path.rsplit('.', 1)[-1] if short else path}</code>"
        target = entry(path, anchors)
        return f'<a href="#{target}">{shown}</a>' if target else shown

    return ROLE.sub(link, html)


def entry(path: str, anchors: set[str]) -> str | None:
    """The anchor of ``path`` on the page: itself, else the only one ending in its name."""
    if path in anchors:
        return path
    name = path.rsplit(".", 1)[-1]
    found = [a for a in anchors if a.endswith("." + name)]
    if len(found) > 1:  # openpista.Tool: the one under the named package
        package = path.split(".", 1)[0]
        found = [a for a in found if a.startswith(package + ".")] if "." in path else found
    return found[0] if len(found) == 1 else None
