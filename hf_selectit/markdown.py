"""Escaping for Markdown, the one home: every user-supplied string that lands in a card body or
a Markdown report (group values, column names, repo and source ids, pretty names, prompts) passes
through one of these functions. (The card's YAML header is written by huggingface_hub's
DatasetCardData; Python and shell snippets quote with `repr` / `shlex.quote`.)
"""

from __future__ import annotations

import html
import re
from typing import Any

# `<`, `>` and `&` become HTML entities; these are the characters that start Markdown syntax
# anywhere in a line (a value is never placed at the start of a line, where `-`, `+` or `1.`
# would also count).
_MD_PUNCT = re.compile(r"([\\`*_\[\]#|~])")


def md_text(value: Any) -> str:
    """`value` as literal Markdown text: HTML and Markdown syntax escaped, on one line.

    Example:
        >>> md_text("<script>*x*</script>")
        '&lt;script&gt;\\*x\\*&lt;/script&gt;'
    """
    return _MD_PUNCT.sub(r"\\\1", html.escape(" ".join(str(value).split()), quote=False))


def md_code(value: Any, *, in_table: bool = False) -> str:
    """`value` as a Markdown inline code span that no backtick inside can close early.

    Example:
        >>> md_code("a`b")
        '``a`b``'
    """
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    # Inside a table a pipe ends the cell even in a code span (GFM); `\|` keeps it literal.
    return span.replace("|", "\\|") if in_table else span


def code_fence(content: str) -> str:
    """A backtick fence longer than any backtick run in `content` (at least three)."""
    return "`" * max(3, max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
