"""Dataset cards: YAML header, body sections, license resolution, histogram, packaged template."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from datasets import Dataset
from huggingface_hub import DatasetCard

from hf_selectit import cards
from hf_selectit.errors import ConfigError
from hf_selectit.plots import score_histogram
from hf_selectit.provenance import build_provenance
from hf_selectit.publishing import card_facts
from hf_selectit.report import selection_report
from hf_selectit.select import select_random, select_top
from tests.test_publish_local import make_scored

REPO_ROOT = Path(__file__).resolve().parent.parent


def _yaml(card: DatasetCard) -> dict:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _facts(subset, scored, prov, card_data):
    """What the publisher gathers before the card renders: license and language, the report."""
    defaults = card_facts(source_id=prov["source"]["id"], card_data=card_data)
    report = selection_report(scored, subset).to_markdown() if scored is not None else None
    return {"defaults": defaults, "report_markdown": report}


def _card(subset, scored=None, **kwargs):
    prov = build_provenance(subset, version="v1.0", scored=scored, source=kwargs.pop("source", None))
    kwargs.setdefault("card_data", {"license": "mit"})
    kwargs.update(_facts(subset, scored, prov, kwargs["card_data"]))
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
    assert meta["license"] == "mit" and "language" not in meta and meta["pretty_name"] == "Selective Demo"
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
    assert "load_dataset('me/Selective-Demo', revision='v1.0', split='train')" in body
    assert "load_dataset('me/Selective-Demo', 'scores', revision='v1.0', split='train')" in body
    assert "title     = {SelectIT: Selective Instruction Tuning for LLMs via Uncertainty-Aware Self-Reflection}" in body
    assert "Liu, Liangxin and Liu, Xuebo and Wong, Derek F. and Li, Dongfang and Wang, Ziyi and Hu, Baotian and Zhang, Min" in body
    assert "NeurIPS" in body and "2402.16705" in body
    assert "original order of the source dataset" in body
    assert "hf-selectit run demo.yaml" in body
    assert "SelectITScorer('tiny/random-llama', revision='0123abcd', prompts=3" in body
    assert "select_top(ds, ratio=0.25, column='selectit_sentence_score', order='original')" in body
    assert "| `selectit_` | SelectIT | `tiny/random-llama` | `0123abcd` | 1,234,567 |" in body
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
    assert cards.md_text(f"taken from the card of {src}") in card.text

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


def _pixels(path):
    from matplotlib.image import imread

    image = imread(path)
    return image, {tuple((image[y, x, :3] * 255).round().astype(int))
                   for y in range(0, image.shape[0]) for x in range(0, image.shape[1], 2)}


def _near(pixels, hex_colour, tol=12):
    target = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return any(all(abs(int(p) - t) <= tol for p, t in zip(px, target)) for px in pixels)


def test_histogram_png(tmp_path):
    import matplotlib

    from hf_selectit import plots

    backend = matplotlib.get_backend()
    path = score_histogram(all_scores=[0.5, 1.0, math.nan, None, 4.0, 4.5], kept_scores=[4.0, 4.5],
                           path=tmp_path / "h.png", cutoff=4.0)
    image, pixels = _pixels(path)
    assert image.shape[:2] == (400, 700)
    # Filled kept bars, the all-rows outline drawn over them, and the dashed cut-off line.
    assert _near(pixels, plots.KEPT_COLOR) and _near(pixels, plots.ALL_COLOR)
    assert _near(pixels, plots.CUTOFF_COLOR)
    assert matplotlib.get_backend() == backend        # the user's pyplot backend is untouched

    no_cut = score_histogram(all_scores=[0.5, 1.0], kept_scores=[1.0], path=tmp_path / "n.png")
    assert not _near(_pixels(no_cut)[1], plots.CUTOFF_COLOR)


def test_histogram_counts_whole_rows_and_shows_every_bar():
    """Few rows: integer ticks only; the all-rows series is an outline drawn above the kept bars
    (kept bars used to hide the all-rows bars wherever every row of a bin was kept)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hf_selectit.plots import plot_scores

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    plot_scores(ax, all_scores=[1.0, 2.0, 3.0], kept_scores=[3.0], bins=3, cutoff=3.0)
    fig.canvas.draw()
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    kept_bars = [p for p in ax.patches if p.get_label() != "all rows (3)" and p.get_fill()]
    outline = [p for p in ax.patches if not p.get_fill()]
    assert outline and all(o.get_zorder() > b.get_zorder() for o in outline for b in kept_bars)
    assert [line.get_xdata()[0] for line in ax.lines] == [3.0]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == [
        "all rows (3)", "kept rows (1)", "selection cut-off (3)"]


def test_selection_cutoff():
    from hf_selectit.plots import selection_cutoff

    assert selection_cutoff({"rule": "top_ratio"}, [3.0, None, 2.5, float("nan")]) == 2.5
    assert selection_cutoff({"rule": "threshold", "threshold": 1.5}, [2.0]) == 1.5
    assert selection_cutoff({"rule": "top_k", "by": "src"}, [2.0]) is None
    assert selection_cutoff({"method": "random", "rule": "random_k"}, [2.0]) is None
    assert selection_cutoff(None, [2.0]) is None


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


# --- what a reader needs: columns, samples, fusion, prompts, features, language ---------------


def _code_blocks(text: str, lang: str) -> list[str]:
    import re

    return [m.group(2) for m in re.finditer(r"^(`{3,})" + lang + r"\n(.*?)\n\1$", text, re.S | re.M)]


def test_column_dictionary_samples_and_features():
    scored = make_scored(20)
    subset = select_top(scored, ratio=0.25)
    card, _ = _card(subset, scored)
    body = card.text
    assert "## Columns added by hf-selectit" in body
    for name, kind in [("selectit_token_scores", "list[float64]"), ("selectit_sentence_score", "float64"),
                       ("selectit_uncertainty", "float64"), ("selectit_status", "string")]:
        assert f"| `{name}` | `{kind}` | " in body
    assert "| `instruction` |" not in body                       # the source's own columns are not "added"
    assert "S_sent = mean(S_token) / (1 + alpha x std(S_token))" in body
    # One sample record per config, as JSON that parses.
    samples = [json.loads(b) for b in _code_blocks(body, "json")]
    assert [s["instruction"] for s in samples] == [subset[0]["instruction"], scored[0]["instruction"]]
    # dataset_info carries the features of both configs.
    info = {entry["config_name"]: entry for entry in _yaml(card)["dataset_info"]} if _yaml(card).get("dataset_info") else {}
    assert info == {}  # _card passes no dataset_info; publish does (next test)


def test_published_card_has_features_in_dataset_info(tmp_path):
    from hf_selectit.publishing import publish

    scored = make_scored(20)
    publish(select_top(scored, ratio=0.25), tmp_path / "out", version="v1", scored=scored,
            card_data={"license": "mit"})
    meta = yaml.safe_load((tmp_path / "out" / "README.md").read_text().split("---\n")[1])
    info = {entry["config_name"]: entry for entry in meta["dataset_info"]}
    assert set(info) == {"default", "scores"}
    features = {f["name"]: f for f in info["default"]["features"]}
    assert features["selectit_sentence_score"] == {"name": "selectit_sentence_score", "dtype": "float64"}
    # datasets' own YAML for a list of floats: `list:` since datasets 4 (its List type), `sequence:`
    # before (the floor's test run); each version reads both.
    list_key = "list" if int(datasets.__version__.split(".")[0]) >= 4 else "sequence"
    assert features["selectit_token_scores"] == {"name": "selectit_token_scores", list_key: "float64"}
    assert info["scores"]["splits"] == [{"name": "train", "num_bytes": info["scores"]["dataset_size"],
                                         "num_examples": 20}]


def test_long_sample_values_are_shortened():
    ds = make_scored(4)
    ds = ds.map(lambda r: {"output": "x" * 5000, "selectit_token_scores": [1.0 / 3] * 40})
    text = cards.sample_record(ds)
    row = json.loads(text)
    assert len(row["output"]) < 200 and row["output"].endswith("\u2026")
    assert row["selectit_token_scores"][:2] == [0.3333, 0.3333] and row["selectit_token_scores"][-1] == "\u2026 34 more"
    assert len(text) < 1500
    nan_row = Dataset.from_dict({"s": [float("nan")]})
    assert json.loads(cards.sample_record(nan_row)) == {"s": None}


def test_fusion_weights_and_prompts_per_scorer():
    from hf_selectit import fuse_models
    from hf_selectit.provenance import attach_scorer_info

    scored = make_scored(20)
    scored = scored.add_column("selectit_b_sentence_score", scored["selectit_sentence_score"])
    scored = scored.add_column("selectit_b_status", scored["selectit_status"])
    scored = attach_scorer_info(scored, {
        "column_prefix": "selectit_b_", "model_id": "tiny/other", "parameter_count": 3_000_000,
        "prompts": ["other prompt"], "alpha": 0.3, "normalization": "paper",
        "output_columns": ["selectit_b_sentence_score", "selectit_b_status"]})
    fused = fuse_models(scored, columns=["selectit_sentence_score", "selectit_b_sentence_score"])
    subset = select_top(fused, ratio=0.25, column="selectit_model_score")
    card, prov = _card(subset, fused)
    body = card.text
    assert "### Fusion weights of `selectit_model_score`" in body
    w = 1_234_567 / (1_234_567 + 3_000_000)
    assert f"| `selectit_sentence_score` | 1,234,567 | {w:.6g} |" in body
    assert f"| `selectit_b_sentence_score` | 3,000,000 | {1 - w:.6g} |" in body
    assert "| `selectit_model_score` | `float64` | S_model" in body and "| `selectit_model_status` |" in body
    # Different prompts per scorer: one numbered list each, never a Python dict.
    assert "Rating prompts of `selectit_`:\n\n1. prompt one\n2. prompt two\n3. prompt three" in body
    assert "Rating prompts of `selectit_b_`:\n\n1. other prompt" in body
    assert "{'" not in body and "**alpha** (uncertainty weight, sentence score = mean / (1 + alpha * std)): " \
        "`selectit_`: 0.2; `selectit_b_`: 0.3" in body
    assert "ds = fuse_models(ds, columns=['selectit_sentence_score', 'selectit_b_sentence_score'], " \
        "params=[1234567.0, 3000000.0], output='selectit_model_score')" in body


def test_language_comes_from_the_source_card_only(tmp_path, caplog):
    subset = select_top(make_scored(10), k=2)
    src = tmp_path / "src"
    src.mkdir()
    (src / "README.md").write_text("---\nlicense: mit\nlanguage:\n- de\n---\n# source\n")
    card, _ = _card(subset, source=str(src), card_data=None)
    assert _yaml(card)["language"] == ["de"] and "**Language:** `de`" in card.text
    card, _ = _card(subset, source=str(src), card_data={"language": "fr"})
    assert _yaml(card)["language"] == ["fr"]
    with caplog.at_level(logging.INFO, logger="hf_selectit.cards"):
        card, _ = _card(subset)
    assert "language" not in _yaml(card) and "not stated" in card.text
    assert "card_data={'language'" in caplog.text


@pytest.mark.parametrize("key, value", [("dataset_info", {"features": []}), ("configs", [{"config_name": "x"}]),
                                        ("size_categories", ["1M<n<10M"])])
def test_computed_header_fields_cannot_be_overwritten(caplog, key, value):
    subset = select_top(make_scored(10), k=2)
    with caplog.at_level(logging.WARNING, logger="hf_selectit.cards"):
        card, _ = _card(subset, card_data={"license": "mit", key: value},
                        dataset_info=[cards.split_info("default", subset, download_size=1)])
    meta = _yaml(card)
    assert meta["configs"][0]["config_name"] == "default"
    assert meta["size_categories"] == ["n<1K"]
    assert meta["dataset_info"][0]["splits"][0]["num_examples"] == 2
    assert f"card_data['{key}'] is ignored" in caplog.text


def test_user_tags_and_sources_are_added_not_replacing():
    subset = select_top(make_scored(10), k=2)
    card, _ = _card(subset, source="org/source", card_data={
        "license": "mit", "tags": "extra", "source_datasets": ["org/other"]})
    meta = _yaml(card)
    assert meta["tags"] == ["selectit", "data-selection", "instruction-tuning", "extra"]
    assert meta["source_datasets"] == ["org/source", "org/other"]


HOSTILE = [
    "me/it's",
    'me/say "hi"',
    "me/back\\slash",
    "me/```fence",
    "./dir with 'quote' and \"double\"",
]


@pytest.mark.parametrize("repo_id", HOSTILE)
@pytest.mark.parametrize("is_local", [False, True])
def test_user_strings_are_escaped_for_each_context(repo_id, is_local):
    scored = make_scored(10)
    subset = select_top(scored, k=2)
    pretty = "<script>alert('x')</script> *b* | [l](u) `c`"
    card, _ = _card(subset, scored, is_local=is_local,
                    card_data={"license": "mit", "pretty_name": pretty,
                               "reproduce_command": "hf-selectit run 'a b.yaml' # ```"})
    prov = build_provenance(subset, version="v1.0", scored=scored, source="org/src'x")
    card_data = {"license": "mit", "pretty_name": pretty, "reproduce_command": "hf-selectit run 'a b.yaml' # ```"}
    card = cards.build_card(subset, repo_id=repo_id, version="v1.0", provenance=prov,
                            scored=scored, is_local=is_local, card_data=card_data,
                            **_facts(subset, scored, prov, card_data))
    text = str(card)
    # YAML header: round-trips exactly.
    assert _yaml(card)["pretty_name"] == pretty
    assert DatasetCard(text).data.pretty_name == pretty
    body = card.text
    assert "<script>" not in body and "&lt;script&gt;" in body
    # Every Python block compiles, and names the repo exactly.
    blocks = _code_blocks(body, "python")
    assert len(blocks) == 2
    for block in blocks:
        compile(block, "<card>", "exec")
    namespace = {}
    usage = blocks[0].replace("from datasets import load_dataset", "")
    exec(usage, {"load_dataset": lambda *a, **k: namespace.setdefault("args", a)})
    assert namespace["args"][0] == repo_id
    # Fences are longer than any backtick run inside.
    assert "hf-selectit run 'a b.yaml' # ```" in _code_blocks(body, "bash")[0]


def test_run_config_is_uploaded_and_reproduced(tmp_path):
    from hf_selectit.publishing import publish

    config = tmp_path / "job.yaml"
    config.write_text("# my run\ninput: data.jsonl\nselect: {ratio: 0.2}\n")
    scored = make_scored(10)
    target = tmp_path / "out"
    result = publish(select_top(scored, k=2), target, version="v1", scored=scored,
                     card_data={"license": "mit"}, run_config=config)
    assert "selectit_run.yaml" in result.files
    assert (target / "selectit_run.yaml").read_text() == config.read_text()
    body = (target / "README.md").read_text()
    assert f"hf-selectit run {target}/selectit_run.yaml" in body
    assert "- `selectit_run.yaml`: the `hf-selectit run` configuration" in body
    # A later version without a run config removes the stale one.
    publish(select_top(scored, k=3), target, version="v2", scored=scored, card_data={"license": "mit"},
            run_config={"input": "other.jsonl"})
    assert yaml.safe_load((target / "selectit_run.yaml").read_text()) == {"input": "other.jsonl"}
    publish(select_top(scored, k=3), target, version="v3", card_data={"license": "mit"})
    assert not (target / "selectit_run.yaml").exists()
    with pytest.raises(ConfigError, match="is not a file"):
        publish(select_top(scored, k=3), tmp_path / "y", version="v1", card_data={"license": "mit"},
                run_config=tmp_path / "missing.yaml")
    assert not (tmp_path / "y").exists()


def test_hub_card_reproduce_downloads_the_run_config():
    lines = cards.reproduce_run_config("me/it's", "v1.0", filename="selectit_run.yaml", is_local=False)
    assert lines.splitlines() == [
        "hf download 'me/it'\"'\"'s' selectit_run.yaml --repo-type dataset --revision v1.0 --local-dir .",
        "hf-selectit run selectit_run.yaml"]


def test_other_methods_columns_and_reproduce_snippet():
    from hf_selectit.config import AlpaGasusConfig
    from hf_selectit.provenance import attach_scorer_info

    scored = make_scored(10)
    scored = scored.add_column("alpagasus_score", [float(i % 6) for i in range(10)])
    scored = scored.add_column("alpagasus_rating_mass", [0.9] * 10)
    scored = scored.add_column("alpagasus_status", ["ok"] * 10)
    options = {f: getattr(AlpaGasusConfig(), f) for f in AlpaGasusConfig.__dataclass_fields__}
    options.update(model="org/judge", max_length=512)
    scored = attach_scorer_info(scored, {
        "column_prefix": "alpagasus_", "method": "alpagasus", "model": "org/judge",
        "parameter_count": 7, "options": options,
        "output_columns": ["alpagasus_score", "alpagasus_rating_mass", "alpagasus_status"]})
    subset = select_top(scored, threshold=4.5, column="alpagasus_score")
    card, _ = _card(subset, scored)
    body = card.text
    assert "| `alpagasus_` | AlpaGasus | `org/judge` |" in body
    assert "| `alpagasus_score` | `float64` | AlpaGasus rating with a local judge" in body
    assert "| `alpagasus_rating_mass` | `float64` | Full-vocabulary next-token probability" in body
    snippet = _code_blocks(body, "python")[1]
    compile(snippet, "<card>", "exec")
    assert "from hf_selectit import AlpaGasusScorer, SelectITScorer, fuse_models, publish, select_top" in snippet
    assert "ds = ds.map(AlpaGasusScorer('org/judge', max_length=512, column_prefix='alpagasus_'), batched=True)" in snippet
    assert "select_top(ds, threshold=4.5, column='alpagasus_score', order='original')" in snippet


@pytest.mark.parametrize("higher_is_better", [None, True, False])
def test_reproduce_snippet_selects_the_same_rows_when_the_direction_is_overridden(higher_is_better):
    # The snippet's select_top must keep the rows the published subset holds, also when the
    # selection ranked against the column's own direction.
    scored = make_scored(10)
    subset = select_top(scored, ratio=0.4, higher_is_better=higher_is_better)
    card, _ = _card(subset, scored)
    call = next(line for line in _code_blocks(card.text, "python")[1].splitlines() if "select_top(" in line)
    assert ("higher_is_better=False" in call) == (higher_is_better is False)
    again = eval(call.split(" = ", 1)[1], {"select_top": select_top, "ds": scored})
    assert again["instruction"] == subset["instruction"]


@pytest.mark.parametrize("higher_is_better", [None, True])
def test_reproduce_snippet_keeps_a_lower_is_better_methods_own_direction(higher_is_better):
    from hf_selectit.provenance import attach_scorer_info

    scored = make_scored(10).add_column("rifd_score", [float(i % 4) for i in range(10)])
    scored = attach_scorer_info(scored.add_column("rifd_status", ["ok"] * 10), {
        "column_prefix": "rifd_", "method": "rifd", "model": "org/student",
        "options": {"model": "org/student"}, "output_columns": ["rifd_score", "rifd_status"]})
    subset = select_top(scored, ratio=0.4, column="rifd_score", higher_is_better=higher_is_better)
    card, _ = _card(subset, scored)
    call = next(line for line in _code_blocks(card.text, "python")[1].splitlines() if "select_top(" in line)
    assert ("higher_is_better=True" in call) == (higher_is_better is True)
    assert "higher_is_better=False" not in call  # r-IFD's own direction: the default reproduces it
    again = eval(call.split(" = ", 1)[1], {"select_top": select_top, "ds": scored})
    assert again["instruction"] == subset["instruction"]


def test_ifd_status_column_says_how_ifd_truncates():
    """IFD cuts on the right (the authors' rule), unlike the rating methods: the card says so."""
    from hf_selectit.cards import added_columns

    scored = make_scored(4).add_column("ifd_status", ["ok"] * 4)
    prov = {"scorers": {"ifd_": {"method": "ifd", "output_columns": ["ifd_status"]},
                        "selectit_": {"method": "selectit", "output_columns": ["selectit_status"]}}}
    described = {c["name"]: c["description"] for c in added_columns(prov, scored)}
    assert "cut on the right at max_length" in described["`ifd_status`"]
    assert "response tokens is read in both texts" in described["`ifd_status`"]
    assert "middle first" in described["`selectit_status`"]
