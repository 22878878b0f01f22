"""The bundled demo set, and `hf-selectit demo` on the real embedded SmolLM2 (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from importlib import resources

import pytest

KINDS = {"good", "wrong", "off_topic", "truncated", "refusal"}


def _demo_rows() -> list[dict]:
    text = (resources.files("hf_selectit") / "data" / "demo.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_demo_dataset_ships_with_the_package_and_mixes_kinds():
    rows = _demo_rows()
    assert 55 <= len(rows) <= 70
    assert all(set(r) == {"id", "instruction", "input", "output", "kind"} for r in rows)
    assert [r["id"] for r in rows] == list(range(len(rows)))
    counts = Counter(r["kind"] for r in rows)
    assert set(counts) == KINDS and min(counts.values()) >= 5
    assert sum(1 for r in rows if r["input"]) >= 5  # some rows use Alpaca's `input`
    assert all(r["instruction"].strip() and r["output"].strip() for r in rows)
    assert len({(r["instruction"], r["input"], r["output"]) for r in rows}) == len(rows)


@pytest.mark.slow
def test_demo_command_on_the_embedded_model(tmp_path):
    """`hf-selectit demo --limit 10` end to end with the real SmolLM2: scored, top 20% kept,
    published as a dataset folder with its card, loadable with `load_dataset(folder)`."""
    import datasets

    from hf_selectit.models import cache_dir

    out = tmp_path / "selective-demo"
    summary = tmp_path / "summary.json"
    cache_work = cache_dir() / "work"
    before = sorted(cache_work.rglob("*")) if cache_work.exists() else []
    run = subprocess.run([sys.executable, "-m", "hf_selectit.cli", "demo", "--limit", "10", "--output",
                          str(out), "--summary-json", str(summary)],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # No checkpoints left behind: not beside the output, not in the user cache.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["selective-demo", "summary.json"]
    assert (sorted(cache_work.rglob("*")) if cache_work.exists() else []) == before
    assert f'load_dataset({str(out)!r}, split="train")' in run.stdout  # a valid Python literal
    assert "kept by kind" in run.stdout
    numbers = json.loads(summary.read_text())
    assert numbers["rows"] == 10 and numbers["rows_scored"] == 10 and numbers["kept"] == 2
    assert numbers["errors"] == 0

    subset = datasets.load_dataset(str(out), split="train")
    assert len(subset) == 2
    ids = subset["id"]
    assert ids == sorted(ids)  # original order
    scores = datasets.load_dataset(str(out), "scores", split="train")
    assert len(scores) == 10
    s = scores["selectit_sentence_score"]
    assert all(0.0 <= x <= 5.0 for x in s) and len(set(s)) > 1
    top2 = sorted(range(10), key=lambda i: (s[i], i), reverse=True)[:2]
    assert ids == sorted(scores["id"][i] for i in top2)
    card = (out / "README.md").read_text()
    assert "license: apache-2.0" in card and "hf-selectit demo" in card
    # The shipped YAML is not published: its relative input points inside the package.
    assert not (out / "selectit_run.yaml").exists() and "selectit_run.yaml" not in card
    assert (out / "selectit.json").is_file()
