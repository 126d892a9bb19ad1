"""mkdocs hook: the repository's URL comes from one place, the root ``pyproject.toml``
(``[project.urls] Repository``). With it, links from docs/ to repository files outside docs/
(config.example.toml, skills/, plugins/...) point there; without it, such a link becomes its
text (the site names no made-up address). A link to a file that does not exist stays as it
is, so that ``mkdocs build --strict`` reports it."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

LINK = re.compile(r"\[([^\]]*)\]\((\.\./[^)#\s]+)[^)]*\)")


def repository_url(root: Path) -> str | None:
    """``[project.urls] Repository`` of the root ``pyproject.toml``, if the project sets it."""
    project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    url = project.get("urls", {}).get("Repository")
    return url.rstrip("/") if isinstance(url, str) and url else None


def on_config(config: Any) -> Any:
    """Take ``repo_url`` (the theme's repository link) from the root ``pyproject.toml``."""
    url = repository_url(Path(config["config_file_path"]).resolve().parent)
    config["repo_url"] = url
    config["repo_name"] = url.split("://", 1)[-1].split("/", 1)[-1] if url else None
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite ``[text](../path)`` links that leave docs_dir and name an existing repository
    file: to the repository's URL, or to ``text`` when the project has none."""
    docs = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    page_dir = (docs / page.file.src_path).parent
    repo = config["repo_url"]

    def rewrite(match: re.Match[str]) -> str:
        target = Path(os.path.normpath(page_dir / match.group(2)))  # symlinks kept
        if target.is_relative_to(docs) or not target.is_relative_to(root) or not target.exists():
            return match.group(0)
        if not repo:
            return match.group(1)
        kind = "tree" if target.is_dir() else "blob"
        return f"[{match.group(1)}]({repo}/{kind}/main/{target.relative_to(root).as_posix()})"

    return LINK.sub(rewrite, markdown)
