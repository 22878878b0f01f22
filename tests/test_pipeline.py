"""pipeline.py and io.py: run-config loading, value checks, checkpointed scoring, inputs/outputs.

Scoring uses the tiny in-process Llama (tests/tiny_lm.py); datasets are real `datasets` objects
written to and read from real files.
"""

from __future__ import annotations

import json
from typing import Optional, Union

import pytest

from hf_selectit.config import IOConfig, PipelineConfig, RunOptions, ScorerConfig, SelectConfig
from hf_selectit.errors import ConfigError
from hf_selectit.io import load_input, resolve_output_format, save_output
from hf_selectit.options import coerce_value, config_from_mapping
from hf_selectit.options import load_run_config as load_pipeline_config
from hf_selectit.pipeline import run_pipeline, score_dataset, select_column_for


def _rows(n: int) -> list[dict]:
    # Distinct rows (the index is part of the text), some with an Alpaca `input`.
    return [
        {"instruction": f"Add {i} and {i + 1}.", "input": "" if i % 3 else f"numbers {i}",
         "output": f"The sum is {2 * i + 1}.", "kind": "good" if i % 2 else "wrong"}
        for i in range(n)
    ]


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ----------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    "value, annotation, from_cli, expected",
    [
        ("3", Union[int, list], True, 3),
        ('["Rate it.", "Score it."]', Union[int, list], True, ["Rate it.", "Score it."]),
        ("7e9", float, False, 7e9),  # YAML 1.1 reads 7e9 as a string
        ("none", Optional[int], True, None),
        ("0.5", Optional[float], True, 0.5),
        ('{"instruction": "q"}', Optional[dict], True, {"instruction": "q"}),
        (4, int, False, 4),
        (True, bool, True, True),
    ],
)
def test_coerce_value_accepts(value, annotation, from_cli, expected):
    assert coerce_value("x", value, annotation, from_cli=from_cli) == expected


@pytest.mark.parametrize(
    "value, annotation, expected_words",
    [
        ("abc", int, "an integer"),
        (2.5, int, "an integer"),
        (True, int, "an integer"),
        ("fast", Optional[float], "a number or null"),
        (5, str, "a string"),
        ("x", Optional[dict], "a mapping"),
        (4.0, int, "an integer"),  # a whole number is written as one, as in Python
        ("yes", bool, "true/false"),  # a flag is --x/--no-x
    ],
)
def test_coerce_value_rejects_with_expected_type(value, annotation, expected_words):
    with pytest.raises(ConfigError) as err:
        coerce_value("opt", value, annotation)
    assert "opt=" in str(err.value) and expected_words in str(err.value)


def test_config_from_mapping_unknown_key_lists_valid_ones_and_suggests():
    with pytest.raises(ConfigError) as err:
        config_from_mapping(SelectConfig, {"ratoi": 0.1}, where="select section")
    msg = str(err.value)
    assert "'ratoi'" in msg and "Did you mean 'ratio'?" in msg
    for name in ("ratio", "k", "threshold", "column", "by", "order"):
        assert f"'{name}'" in msg


def test_config_from_mapping_range_error_names_the_section():
    with pytest.raises(ConfigError, match=r"scorer: alpha=-1 is invalid"):
        config_from_mapping(ScorerConfig, {"alpha": -1}, where="scorer")


# -------------------------------------------------------------------- run config


def test_load_pipeline_config_models_prefixes_params_and_shared_scorer(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "input: data.json\n"
        "limit: 10\n"
        "scorer: {alpha: 0.3, prompts: 3}\n"
        "models:\n"
        "  - {model: a, params: 7e9}\n"
        "  - {model: b, params: 13e9, alpha: 0.1}\n"
        "select: {ratio: 0.1}\n"
        "publish: {repo_id: out-dir, license: mit}\n"
    )
    cfg = load_pipeline_config(path, overrides={"limit": 4})
    assert cfg.io.limit == 4  # the command line wins over the file
    assert [m.model for m in cfg.models] == ["a", "b"]
    assert [m.column_prefix for m in cfg.models] == ["selectit_m0_", "selectit_m1_"]
    assert [m.alpha for m in cfg.models] == [0.3, 0.1]  # per-model value beats the shared one
    assert all(m.prompts == 3 for m in cfg.models)
    assert cfg.model_params == [7e9, 13e9]
    assert cfg.select.ratio == 0.1 and cfg.publish.repo_id == "out-dir"
    assert select_column_for(cfg) == "selectit_model_score"


def test_load_pipeline_config_single_model_selects_on_its_prefix():
    cfg = load_pipeline_config({"input": "x.json", "models": [{"column_prefix": "s_"}]})
    assert select_column_for(cfg) == "s_sentence_score"


@pytest.mark.parametrize(
    "mapping, words",
    [
        ({"input": "x", "modles": []}, ["'modles'", "Did you mean 'models'?", "'shard_rows'"]),
        ({"input": "x", "select": {"ratoi": 0.2}}, ["'ratoi'", "select section", "'ratio'"]),
        ({"input": "x", "models": [{"modle": "m"}]}, ["'modle'", "models[0]", "'model'"]),
        ({"models": [{"model": "m"}]}, ["`input` is missing"]),
        ({"input": "x", "models": [{"column_prefix": "a_"}, {"column_prefix": "a_"}]},
         ["column_prefix must differ"]),
        ({"input": "x", "batch_size": 0}, ["batch_size=0 is invalid"]),
        ({"input": "x", "publish": {"version": "v2"}}, ["publish.repo_id is missing"]),
        ({"input": "x", "models": []}, ["non-empty list"]),
    ],
)
def test_load_pipeline_config_errors(mapping, words):
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(mapping)
    for word in words:
        assert word in str(err.value)


def test_load_pipeline_config_from_missing_or_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_pipeline_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_pipeline_config(bad)


def test_example_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "hf_selectit" / "configs"
    alpaca = load_pipeline_config(root / "selective_alpaca.yaml")
    assert [m.model for m in alpaca.models] == [
        "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf"]
    assert alpaca.model_params == [7e9, 13e9, 70e9]
    assert alpaca.select.ratio == 0.2 and alpaca.io.input == "vicgalle/alpaca-gpt4"
    demo = load_pipeline_config(root / "demo.yaml")
    assert demo.models[0].model is None and demo.publish.repo_id == "./selective-demo"
    # The input path is read from the YAML file's folder, wherever the command runs.
    assert Path(demo.io.input) == (root.parent / "data" / "demo.jsonl").resolve()


# ---------------------------------------------------------------------------- io


def test_load_input_local_formats_and_limit(tmp_path):
    import datasets

    rows = _rows(7)
    jsonl = _write_jsonl(tmp_path / "d.jsonl", rows)
    json_array = tmp_path / "d.json"
    json_array.write_text(json.dumps(rows))
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.to_csv(str(tmp_path / "d.csv"), index=False)
    ds.save_to_disk(str(tmp_path / "disk"))
    datasets.DatasetDict({"train": ds, "test": ds.select(range(2))}).save_to_disk(str(tmp_path / "dd"))
    for source in (jsonl, str(json_array), str(tmp_path / "d.parquet"), str(tmp_path / "d.csv"),
                   str(tmp_path / "disk")):
        loaded = load_input(source, limit=5)
        assert loaded["instruction"] == [r["instruction"] for r in rows[:5]], source
    assert len(load_input(str(tmp_path / "dd"), split="test")) == 2
    with pytest.raises(ConfigError, match=r"split='dev' not found.*\['test', 'train'\]"):
        load_input(str(tmp_path / "dd"), split="dev")
    with pytest.raises(ConfigError, match="No such file or Hub dataset: .*missing.json"):
        load_input(str(tmp_path / "missing.json"))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ConfigError, match="unsupported file type '.txt'"):
        load_input(str(tmp_path / "d.txt"))


def test_save_output_formats_round_trip(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(_rows(3))
    assert resolve_output_format("a/b.parquet") == "parquet"
    assert resolve_output_format("a/b") == "disk"
    for name, fmt in (("out", "disk"), ("o.parquet", "parquet"), ("o.jsonl", "jsonl")):
        assert save_output(ds, str(tmp_path / name)) == fmt
        assert load_input(str(tmp_path / name))["output"] == ds["output"]
    with pytest.raises(ConfigError, match="output_format='xml'"):
        IOConfig(output="x", output_format="xml")


# ----------------------------------------------------------------------- scoring


def test_score_dataset_checkpoints_and_resumes(tmp_path, tiny_model_dir):
    import datasets

    from hf_selectit.provenance import scorer_infos

    ds = load_input(_write_jsonl(tmp_path / "d.jsonl", _rows(10)))
    cfg = ScorerConfig(model=str(tiny_model_dir), prompts=2)
    run = RunOptions(shard_rows=4, batch_size=4, keep_checkpoints=True)
    events = []
    scored, stats = score_dataset(ds, cfg, run=run, work_dir=tmp_path / "work", on_progress=events.append)
    assert (stats.shards, stats.shards_scored, stats.shards_resumed) == (3, 3, 0)
    assert stats.rows_scored == 10 and stats.ok + stats.truncated + stats.errors == 10
    # Every row is reported once (per micro-batch once the engine reports them, else per shard).
    assert sum(e.rows for e in events if e.kind in ("rows", "shard")) == 10
    assert [e.shard for e in events if e.kind == "shard"] == [0, 1, 2]
    assert scored["instruction"] == ds["instruction"]  # same rows, same order
    assert "selectit_sentence_score" in scored.column_names
    assert scorer_infos(scored)["selectit_"]["column_prefix"] == "selectit_"

    again, stats2 = score_dataset(ds, cfg, run=run, work_dir=tmp_path / "work")
    assert (stats2.shards_scored, stats2.shards_resumed, stats2.rows_resumed) == (0, 3, 10)
    assert again["selectit_sentence_score"] == scored["selectit_sentence_score"]

    # The shards hold exactly what a plain Dataset.map gives for the same batches.
    plain = ds.map(__import__("hf_selectit").SelectITScorer.from_config(cfg), batched=True,
                   batch_size=4, load_from_cache_file=False)
    assert plain["selectit_sentence_score"] == pytest.approx(scored["selectit_sentence_score"], rel=1e-6)

    # Another scorer config gets another work directory (no stale reuse).
    _, stats3 = score_dataset(ds, ScorerConfig(model=str(tiny_model_dir), prompts=3), run=run,
                              work_dir=tmp_path / "work")
    assert stats3.shards_resumed == 0
    assert len([p for p in (tmp_path / "work").iterdir() if p.is_dir()]) == 2

    # Without keep_checkpoints the checkpoints go once the run succeeded.
    score_dataset(ds, cfg, run=RunOptions(shard_rows=4, batch_size=4), work_dir=tmp_path / "work2")
    assert not (tmp_path / "work2").exists()
    assert isinstance(scored, datasets.Dataset)


def test_score_dataset_refuses_existing_columns(tmp_path, tiny_model_dir):
    import datasets

    ds = datasets.Dataset.from_list([{**r, "selectit_status": "ok"} for r in _rows(3)])
    with pytest.raises(ConfigError, match=r"already has the columns \['selectit_status'\]"):
        score_dataset(ds, ScorerConfig(model=str(tiny_model_dir)), work_dir=tmp_path)


def test_run_pipeline_two_models_fuses_and_selects(tmp_path, tiny_model_dir):
    from tests.tiny_lm import build_tiny_model_dir

    other = build_tiny_model_dir(tmp_path / "tiny2", seed=1)
    data = _write_jsonl(tmp_path / "d.jsonl", _rows(10))
    cfg = load_pipeline_config({
        "input": data,
        "output": str(tmp_path / "scored"),
        "subset_output": str(tmp_path / "subset.parquet"),
        "summary_json": str(tmp_path / "summary.json"),
        "shard_rows": 5,
        "scorer": {"prompts": 2},
        "models": [{"model": str(tiny_model_dir), "params": 1e9},
                   {"model": str(other), "params": 3e9}],
        "select": {"ratio": 0.3},
    })
    summary, scored, subset = run_pipeline(cfg)
    a, b = scored["selectit_m0_sentence_score"], scored["selectit_m1_sentence_score"]
    assert scored["selectit_model_score"] == pytest.approx([0.25 * x + 0.75 * y for x, y in zip(a, b)])
    assert summary.kept == len(subset) == 3 and summary.select_column == "selectit_model_score"
    best = sorted(range(10), key=lambda i: (scored["selectit_model_score"][i], i), reverse=True)[:3]
    assert subset["instruction"] == [scored["instruction"][i] for i in sorted(best)]
    assert load_input(str(tmp_path / "subset.parquet"))["instruction"] == subset["instruction"]
    saved = json.loads((tmp_path / "summary.json").read_text())
    # 10 rows, 2 models: 20 row scores, counted apart from the rows.
    assert saved["rows"] == 10 and saved["row_scores"] == 20 and saved["rows_scored"] == 20
    assert saved["kept"] == 3 and len(saved["models"]) == 2


def test_pipeline_config_dataclass_defaults():
    cfg = PipelineConfig()
    assert cfg.models == [ScorerConfig()] and cfg.select is None and cfg.publish is None


def test_checkpoint_identity_follows_scores_not_devices(tmp_path, tiny_model_dir):
    import datasets

    from hf_selectit import SelectITScorer
    from hf_selectit.runner import rows_fingerprint, scorer_fingerprint

    base = scorer_fingerprint(SelectITScorer(model=str(tiny_model_dir)))
    same = SelectITScorer(model=str(tiny_model_dir), device="cpu", max_batch_tokens=123)
    assert scorer_fingerprint(same) == base
    assert scorer_fingerprint(SelectITScorer(model=str(tiny_model_dir), alpha=0.5)) != base
    ds = datasets.Dataset.from_list(_rows(4))
    # Rows are hashed by content: the same rows built twice (or read from a file) agree.
    again = datasets.Dataset.from_list(_rows(4))
    assert rows_fingerprint(ds, 0, 2) == rows_fingerprint(again, 0, 2) != rows_fingerprint(ds, 2, 4)
    assert rows_fingerprint(ds.select([1, 0]), 0, 1) == rows_fingerprint(ds, 1, 2)
