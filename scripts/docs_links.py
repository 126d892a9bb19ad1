"""mkdocs hook: links from docs/ to files of the repository outside docs/ (config.example.toml,
skills/, plugins/...) point at the repository (``repo_url``); a link to a file that does not
exist stays as it is, so that ``mkdocs build --strict`` reports it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

LINK = re.compile(r"(\]\()(\.\./[^)#\s]+)([^)]*\))")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite ``](../path)`` links that leave docs_dir and name an existing repository file."""
    docs = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    page_dir = (docs / page.file.src_path).parent

    def rewrite(match: re.Match[str]) -> str:
        target = (page_dir / match.group(2)).resolve()
        if target.is_relative_to(docs) or not target.is_relative_to(root) or not target.exists():
            return match.group(0)
        kind = "tree" if target.is_dir() else "blob"
        url = f"{config['repo_url'].rstrip('/')}/{kind}/main/{target.relative_to(root).as_posix()}"
        return f"{match.group(1)}{url}{match.group(3)}"

    return LINK.sub(rewrite, markdown)
