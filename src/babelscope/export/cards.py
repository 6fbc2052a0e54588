"""Cards: README.md files with YAML front matter, as model hubs read them (metadata above, prose below).

The front matter is written as YAML flow scalars in JSON spelling (YAML 1.2 reads JSON), so no YAML library
is needed and every value is quoted safely.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def front_matter(meta: dict[str, Any]) -> str:
    """`---` + one `key: value` line per entry (None and empty values left out) + `---`."""
    lines = [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in meta.items()
             if value not in (None, "", [], {})]
    return "---\n" + "\n".join(lines) + "\n---\n"


def md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table (pipes in cells escaped)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.4g}"
        return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")
    head = "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n"
    return head + "".join("| " + " | ".join(cell(r.get(c)) for c in columns) + " |\n" for r in rows)


def card(meta: dict[str, Any], title: str, sections: Sequence[tuple[str, str]]) -> str:
    """The whole README.md: front matter, a title, then (heading, markdown) sections."""
    body = "".join(f"\n## {head}\n\n{text.strip()}\n" for head, text in sections if text.strip())
    return f"{front_matter(meta)}\n# {title}\n{body}"


def code(lang: str, text: str) -> str:
    return f"```{lang}\n{text.strip()}\n```\n"


def thin(rows: list[dict], keep: int) -> list[dict]:
    """At most `keep` rows, evenly spaced, always with the first and the last."""
    if len(rows) <= keep:
        return rows
    step = (len(rows) - 1) / (keep - 1)
    return [rows[round(i * step)] for i in range(keep)]
