"""Dataset cards: YAML header, body sections, license resolution, histogram, packaged template."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard

from hf_selectit import cards
from hf_selectit.errors import ConfigError
from hf_selectit.plots import score_histogram
from hf_selectit.provenance import build_provenance
from hf_selectit.report import selection_report
from hf_selectit.select import select_random, select_top
from tests.test_publish_local import make_scored

REPO_ROOT = Path(__file__).resolve().parent.parent


def _yaml(card: DatasetCard) -> dict:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _card(subset, scored=None, **kwargs):
    prov = build_provenance(subset, version="v1.0", scored=scored, source=kwargs.pop("source", None))
    kwargs.setdefault("card_data", {"license": "mit"})
    return cards.build_card(subset, repo_id="me/Selective-Demo", version="v1.0", provenance=prov,
                            scored=scored, **kwargs), prov


@pytest.mark.parametrize("n, label", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"),
                                      (10_400, "10K<n<100K"), (52_002, "10K<n<100K"),
                                      (3_000_000, "1M<n<10M"), (10**13, "n>1T")])
def test_size_category(n, label):
    assert cards.size_category(n) == label


def test_card_yaml_and_body(tmp_path):
    scored = make_scored(20)
    subset = select_top(scored, ratio=0.25)
    card, prov = _card(subset, scored, histogram="selectit_histogram.png",
                       changelog=[{"version": "v0.9", "date": "2024-01-01", "rows": 3, "commit": "`abc`"}],
                       card_data={"license": "mit", "pretty_name": "Selective Demo", "tags": ["alpaca"],
                                  "reproduce_command": "hf-selectit run demo.yaml"})
    meta = _yaml(card)
    assert meta["license"] == "mit" and meta["language"] == ["en"] and meta["pretty_name"] == "Selective Demo"
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]
    assert meta["tags"] == ["selectit", "data-selection", "instruction-tuning", "alpaca"]
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]},
        {"config_name": "scores", "data_files": [{"split": "train", "path": "scores/train-*"}]},
    ]
    # The card round-trips through huggingface_hub's parser.
    reparsed = DatasetCard(str(card))
    assert reparsed.data.license == "mit"

    body = card.text
    assert selection_report(scored, subset).to_markdown().strip() in body
    assert "![Score histogram: all rows vs kept rows](selectit_histogram.png)" in body
    assert "| `v1.0` |" in body and "| `v0.9` | 2024-01-01 | 3 |" in body
    assert 'load_dataset("me/Selective-Demo", revision="v1.0", split="train")' in body
    assert 'load_dataset("me/Selective-Demo", "scores", revision="v1.0", split="train")' in body
    assert "title     = {SelectIT: Selective Instruction Tuning for LLMs via Uncertainty-Aware Self-Reflection}" in body
    assert "Liu, Liangxin and Liu, Xuebo and Wong, Derek F. and Li, Dongfang and Wang, Ziyi and Hu, Baotian and Zhang, Min" in body
    assert "NeurIPS" in body and "2402.16705" in body
    assert "original order of the source dataset" in body
    assert "hf-selectit run demo.yaml" in body
    assert "SelectITScorer('tiny/random-llama', revision='0123abcd', prompts=3" in body
    assert "select_top(ds, ratio=0.25, column='selectit_sentence_score', order='original')" in body
    assert "| `selectit_` | `tiny/random-llama` | `0123abcd` | 1,234,567 |" in body
    assert "**alpha** (uncertainty weight" in body and ": 0.2" in body
    assert "1. prompt one" in body and "kept 5 of 20 rows" in body


def test_card_without_scores_and_score_order():
    scored = make_scored(10)
    subset = select_top(scored, k=4, order="score")
    card, _ = _card(subset)
    assert [c["config_name"] for c in _yaml(card)["configs"]] == ["default"]
    assert "Not available: this version was published without the full scored dataset." in card.text
    assert "best first" in card.text
    assert "![Score histogram" not in card.text


def test_random_baseline_snippet():
    subset = select_random(make_scored(10), k=3, seed=7)
    card, _ = _card(subset)
    assert "subset = select_random(ds, k=3, seed=7)" in card.text


def test_license_from_source_card_or_user_or_error(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "README.md").write_text("---\nlicense: cc-by-nc-4.0\nlanguage:\n- en\n- zh\n---\n# source\n")
    subset = select_top(make_scored(10), k=2)

    card, _ = _card(subset, source=str(src), card_data=None)
    meta = _yaml(card)
    assert meta["license"] == "cc-by-nc-4.0" and meta["language"] == ["en", "zh"]
    assert meta["source_datasets"] == [str(src)]
    assert f"taken from the card of {src}" in card.text

    with caplog.at_level(logging.WARNING, logger="hf_selectit.cards"):
        card, _ = _card(subset, source=str(src), card_data={"license": "mit"})
    assert _yaml(card)["license"] == "mit"
    assert "differs from the source card's license 'cc-by-nc-4.0'" in caplog.text

    (src / "README.md").write_text("# no yaml header\n")
    with pytest.raises(ConfigError) as info:
        _card(subset, source=str(src), card_data=None)
    assert "No license could be read" in str(info.value) and "card_data={'license'" in str(info.value)
    with pytest.raises(ConfigError, match="No source dataset was given"):
        _card(subset, card_data={})


def test_configs_in_card_data_are_ignored(caplog):
    subset = select_top(make_scored(10), k=2)
    with caplog.at_level(logging.WARNING, logger="hf_selectit.cards"):
        card, _ = _card(subset, card_data={"license": "mit", "configs": [{"config_name": "x"}]})
    assert [c["config_name"] for c in _yaml(card)["configs"]] == ["default"]
    assert "ignored" in caplog.text


def test_histogram_png(tmp_path):
    import matplotlib
    from matplotlib.image import imread

    backend = matplotlib.get_backend()
    path = score_histogram(all_scores=[0.5, 1.0, math.nan, None, 4.0, 4.5], kept_scores=[4.0, 4.5],
                           path=tmp_path / "h.png")
    image = imread(path)
    assert image.shape[:2] == (400, 700)
    # Two colours of bars were drawn (grey for all rows, orange for kept rows).
    pixels = {tuple((image[y, x, :3] * 255).round().astype(int)) for y in range(0, 400, 2) for x in range(0, 700, 2)}
    assert (0x9a, 0xa5, 0xb1) in pixels
    assert any(r > 200 and g < 120 and b < 60 for r, g, b in pixels)
    assert matplotlib.get_backend() == backend        # the user's pyplot backend is untouched


def test_template_ships_in_a_normal_install(tmp_path):
    """A non-editable install (wheel layout) carries the template as hf_selectit.dataset_cards."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    for folder in ("hf_selectit", "dataset_cards"):
        shutil.copytree(REPO_ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True)
    code = ("import hf_selectit.cards as c; p = c.template_path(); print(c.__file__); print(p); "
            "print(open(p).read().count('{{ card_data }}'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[0] == str(target / "hf_selectit" / "cards.py")
    assert out[1] == str(target / "hf_selectit" / "dataset_cards" / "selective_dataset.md")
    assert out[2] == "1"
