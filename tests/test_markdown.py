"""The card escapes what it quotes: user strings in the card body (group values, column names,
pretty name, tags) never land as raw HTML, and never break a table row (hf_selectit/markdown.py)."""

from __future__ import annotations

import re

from datasets import Dataset

from hf_selectit import publish, select_top
from hf_selectit.markdown import md_code, md_text
from hf_selectit.report import selection_report
from tests.test_publish_local import make_scored

HOSTILE = ["<script>alert(1)</script>", "a|b", "line\nbreak"]


def _body(card_text: str) -> str:
    return card_text.split("\n---\n", 1)[1]  # after the YAML header


def _outside_code(text: str) -> str:
    """The Markdown text less fenced blocks and code spans (where nothing is rendered as HTML)."""
    text = re.sub(r"(`{3,})[^\n]*\n.*?\n\1", "", text, flags=re.S)
    return re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", "", text)


def test_md_text_and_md_code_escape_for_a_table_cell():
    assert md_text("<script>|x\ny") == "&lt;script&gt;\\|x y"
    assert md_code("a|b", in_table=True) == "`a\\|b`"


def test_group_values_and_names_in_the_card_are_escaped(tmp_path):
    scored = make_scored(12)
    scored = scored.add_column("group", [HOSTILE[i % 3] for i in range(12)])
    subset = select_top(scored, ratio=0.5, by="group")
    target = tmp_path / "pub"
    publish(subset, target, version="v1", scored=scored,
            card_data={"license": "mit", "pretty_name": "<b>Pretty</b> | name", "tags": ["<i>tag</i>"]})
    body = _body((target / "README.md").read_text())
    shown = _outside_code(body)
    for raw in ("<script>", "<b>", "<i>", "line\nbreak"):
        assert raw not in shown, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "a\\|b" in body and "line break" in body
    # The group table keeps four cells in every row.
    header = body.index("| group | Rows | Selected | Share |")
    rows = body[header:].split("\n\n", 1)[0].splitlines()
    assert len(rows) == 2 + 3
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 5, row


def test_column_names_in_the_report_are_escaped():
    # No instruction/response columns: the report says why the baselines are missing, naming
    # the columns.
    scored = Dataset.from_dict({"<script>q</script>": ["x"] * 6, "a|b\nc": ["y"] * 6,
                                "selectit_sentence_score": [float(i) for i in range(6)]})
    subset = select_top(scored, k=2)
    text = selection_report(scored, subset, n_boot=0).to_markdown()
    assert "Baseline overlaps: not computed" in text
    assert "<script>" not in _outside_code(text) and "&lt;script&gt;q&lt;/script&gt;" in text
    note = next(line for line in text.splitlines() if line.startswith("Baseline overlaps"))
    assert "a\\|b" in note and "Columns:" in note and note.endswith(").")  # one line, pipe escaped
