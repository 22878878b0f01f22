"""Provenance travels with the files: the scorer's identity is written beside the data in every
output format (folder, parquet, jsonl) and read back by `load_input`, so `select`, `fuse_models`
and `publish` find it; the README's own Python path (`ds.map(scorer)` -> `select_top` ->
`publish`) publishes a card that names the model, prompts, alpha and normalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_selectit.errors import ConfigError


def _rows(n: int) -> list[dict]:
    return [{"instruction": f"Name the number {i}.", "input": "", "output": f"It is {i}."} for i in range(n)]


@pytest.fixture(scope="module")
def scored(tiny_model_dir):
    """Ten rows scored by the tiny model with a prefix no other test uses (the process registry
    holds it, as it would after a user's `ds.map(scorer)`)."""
    import datasets

    from hf_selectit import SelectITScorer

    scorer = SelectITScorer(model=str(tiny_model_dir), prompts=2, alpha=0.3, column_prefix="prov_")
    ds = datasets.Dataset.from_list(_rows(10)).map(scorer, batched=True, load_from_cache_file=False)
    return ds, scorer


def test_readme_python_path_publishes_a_card_naming_the_scorer(tmp_path, tiny_model_dir):
    import datasets

    from hf_selectit import SelectITScorer, publish, select_top

    ds = datasets.Dataset.from_list(_rows(10))
    ds = ds.map(SelectITScorer(model=str(tiny_model_dir), prompts=3, alpha=0.25), batched=True,
                load_from_cache_file=False)
    subset = select_top(ds, ratio=0.2)
    publish(subset, str(tmp_path / "pub"), version="v1.0", scored=ds, card_data={"license": "mit"})
    card = (tmp_path / "pub" / "README.md").read_text()
    prov = json.loads((tmp_path / "pub" / "selectit.json").read_text())
    assert str(tiny_model_dir) in card
    assert "0.25" in card and "paper" in card  # alpha and normalisation
    assert "not recorded" not in card
    scorer = prov["scorers"]["selectit_"]
    assert scorer["alpha"] == 0.25 and scorer["n_prompts"] == 3 and scorer["model"] == str(tiny_model_dir)
    assert len(scorer["prompts"]) == 3 and scorer["normalization"] == "paper"


@pytest.mark.parametrize("name", ["folder", "scored.parquet", "scored.jsonl"])
def test_provenance_round_trips_through_every_format(tmp_path, scored, name):
    from hf_selectit.io import load_input, save_output
    from hf_selectit.provenance import scorer_infos
    from hf_selectit.select import fuse_models, select_top

    ds, scorer = scored
    out = str(tmp_path / name)
    save_output(ds, out)
    back = load_input(out)
    # Read from the file written beside the data, not from this process's registry.
    infos = scorer_infos(back, registry=False)
    assert infos["prov_"]["alpha"] == 0.3 and infos["prov_"]["model"] == scorer.config.model
    assert back["prov_sentence_score"] == pytest.approx(ds["prov_sentence_score"])

    # select keeps it on the subset, and the subset's own file carries it with its rule.
    subset = select_top(back, ratio=0.3, column="prov_sentence_score")
    sub_out = str(tmp_path / ("sub-" + name))
    save_output(subset, sub_out)
    sub_back = load_input(sub_out)
    assert scorer_infos(sub_back, registry=False)["prov_"]["alpha"] == 0.3
    from hf_selectit.select import selection_rule

    assert selection_rule(sub_back)["rows_kept"] == 3

    # fuse_models reads the recorded parameter count (no params= needed).
    two = back.add_column("twin_sentence_score", back["prov_sentence_score"])
    from hf_selectit.provenance import attach_scorer_info

    twin = dict(infos["prov_"], column_prefix="twin_")
    fused = fuse_models(attach_scorer_info(two, twin),
                        columns=["prov_sentence_score", "twin_sentence_score"])
    assert fused["selectit_model_score"] == pytest.approx(back["prov_sentence_score"])


def test_publish_reads_provenance_from_files(tmp_path, scored):
    from hf_selectit.io import load_input, save_output
    from hf_selectit.publishing import publish
    from hf_selectit.select import select_top

    ds, scorer = scored
    save_output(ds, str(tmp_path / "s.parquet"))
    back = load_input(str(tmp_path / "s.parquet"))
    subset = select_top(back, ratio=0.2, column="prov_sentence_score")
    publish(subset, str(tmp_path / "pub"), version="v1", scored=back, card_data={"license": "mit"})
    prov = json.loads((tmp_path / "pub" / "selectit.json").read_text())
    assert prov["scorers"]["prov_"]["alpha"] == 0.3
    # The published folder's `scores` config comes back with its provenance too.
    again = load_input(str(tmp_path / "pub"), config_name="scores")
    from hf_selectit.provenance import scorer_infos

    assert scorer_infos(again, registry=False)["prov_"]["model"] == scorer.config.model


def test_unknown_scorer_is_a_clear_error_not_a_blank_card(tmp_path):
    import datasets

    from hf_selectit.publishing import publish

    ds = datasets.Dataset.from_list(
        [{"instruction": "a", "output": "b", "nobody_sentence_score": 1.0}] * 3)
    with pytest.raises(ConfigError) as err:
        publish(ds, str(tmp_path / "pub"), version="v1", card_data={"license": "mit"})
    msg = str(err.value)
    assert "nobody_sentence_score" in msg and "scorers=" in msg
    assert not (tmp_path / "pub").exists()  # refused before anything is written


def test_explicit_scorers_describe_foreign_columns(tmp_path, scored):
    import datasets

    from hf_selectit.publishing import publish

    _, scorer = scored
    ds = datasets.Dataset.from_list([{"instruction": "a", "output": "b", "prov_sentence_score": 1.0}] * 3)
    publish(ds, str(tmp_path / "pub"), version="v1", card_data={"license": "mit"}, scorers=[scorer])
    prov = json.loads((tmp_path / "pub" / "selectit.json").read_text())
    assert prov["scorers"]["prov_"]["alpha"] == 0.3


def test_cli_score_writes_sidecar_beside_jsonl_and_select_reads_it(tmp_path, tiny_model_dir, capsys):
    from hf_selectit import cli

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(6)))
    out = tmp_path / "scored.jsonl"
    assert cli.main(["-q", "score", str(data), "--model", str(tiny_model_dir), "--prompts", "2",
                     "--column-prefix", "cli_", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [f"done: 6 rows -> {out}"]
    sidecar = Path(str(out) + ".selectit.json")
    assert json.loads(sidecar.read_text())["scorers"]["cli_"]["n_prompts"] == 2
    report = tmp_path / "r.json"
    assert cli.main(["-q", "select", str(out), "--column", "cli_sentence_score", "--k", "2",
                     "--output", str(tmp_path / "sub.parquet"), "--report-json", str(report)]) == 0
    out_text = capsys.readouterr().out
    assert out_text.strip().splitlines()[-1].startswith("kept 2 of 6 rows")
    assert len(out_text.strip().splitlines()) == 1  # --quiet: only the final line
    report_data = json.loads(report.read_text())
    assert report_data["rows_kept"] == 2 and report_data["rows_in"] == 6
    sub_sidecar = tmp_path / "sub.parquet.selectit.json"
    assert json.loads(sub_sidecar.read_text())["scorers"]["cli_"]["n_prompts"] == 2


@pytest.mark.hub
def test_provenance_read_back_from_a_hub_repo(tmp_path, scored, local_hub, monkeypatch):
    """The published `scores` config, loaded from the Hub by id and version, carries the scorer."""
    import uuid

    from hf_selectit.io import load_input
    from hf_selectit.provenance import scorer_infos
    from hf_selectit.publishing import publish
    from hf_selectit.select import select_top

    monkeypatch.setenv("HF_TOKEN", local_hub.token)
    local_hub.fail_commits(False)
    ds, scorer = scored
    repo = f"tester/prov-{uuid.uuid4().hex[:8]}"
    subset = select_top(ds, ratio=0.3, column="prov_sentence_score")
    publish(subset, repo, version="v1.0", scored=ds, card_data={"license": "mit"})
    back = load_input(repo, config_name="scores", revision="v1.0")
    info = scorer_infos(back, registry=False)["prov_"]
    assert info["alpha"] == 0.3 and info["model"] == scorer.config.model
    # A Hub id that does not exist: a clear error, no traceback from the client.
    with pytest.raises(ConfigError, match="No such file or Hub dataset: 'tester/does-not-exist'"):
        load_input("tester/does-not-exist")


@pytest.mark.parametrize("content", ["[1, 2]", '"scores"'])
def test_a_sidecar_that_is_not_a_json_object_is_named_with_the_fix(tmp_path, content):
    from datasets import Dataset

    from hf_selectit.io import load_input

    data = tmp_path / "scored.parquet"
    Dataset.from_dict({"instruction": ["a"], "output": ["b"]}).to_parquet(str(data))
    Path(str(data) + ".selectit.json").write_text(content)
    with pytest.raises(ConfigError, match=r"scored\.parquet\.selectit\.json: expected a JSON object.*fix or delete"):
        load_input(str(data))
