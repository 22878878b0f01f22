"""The `hf-selectit` command: options generated from the dataclasses, config errors, the tiny-model
end-to-end path (score -> select -> publish to a local folder -> load_dataset). The resume
tests (a real subprocess killed part-way) are in test_runner.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from hf_selectit import cli, options
from hf_selectit.config import IOConfig, PublishConfig, RunOptions, ScorerConfig, SelectConfig

REPO = Path(__file__).resolve().parents[1]


def _rows(n: int) -> list[dict]:
    return [
        {"instruction": f"Write the number {i} in words.", "input": "" if i % 4 else "plain English",
         "output": f"The number is {i}." if i % 3 else "No.", "kind": "good" if i % 3 else "wrong"}
        for i in range(n)
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------------ --help


def test_help_imports_no_torch():
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from hf_selectit.cli import parse_command\n"
        "for c in ('score', 'select', 'publish', 'run', 'demo'):\n"
        "    try:\n"
        "        parse_command([c, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'numpy', 'pyarrow') if m in sys.modules]\n"
        "print('RESULT', heavy, time.perf_counter() - t, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("RESULT")][0]
    assert "RESULT [] " in line, line  # nothing heavy imported by --help

    console = Path(sys.executable).with_name("hf-selectit")
    out = subprocess.run([str(console), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "score" in out.stdout and "demo" in out.stdout


def test_every_dataclass_field_is_an_option_with_help_and_default(capsys):
    expected = {
        "score": (IOConfig, ScorerConfig, RunOptions),
        "select": (IOConfig, SelectConfig),
        "publish": (PublishConfig,),
        "run": (RunOptions,),
    }
    for command, classes in expected.items():
        text = _help(command, capsys)
        for cls in classes:
            for f in fields(cls):
                if (command, f.name) in {("score", "input"), ("select", "input"), ("score", "subset_output")}:
                    continue
                assert options.flag_of(cls, f.name) + " " in text, (command, f.name)
    text = _help("score", capsys)
    assert "Uncertainty weight of the sentence level" in text and "(default: 0.2)" in text
    assert "--model-revision" in text and "--trust-remote-code | --no-trust-remote-code" in text
    # Defect: a command's description printed argparse's escaped "%%" ("the top 20%%").
    assert "top 20% " in _help("demo", capsys).replace("\n", " ") and "%%" not in _help("validate", capsys)


def test_yaml_values_and_flag_precedence(tmp_path):
    cfg = tmp_path / "score.yaml"
    cfg.write_text("alpha: 0.5\nprompts: 3\nmodel-revision: abc\ncolumns: {instruction: q}\nlimit: 7\n")
    args = cli.parse_command(
        ["score", "in.json", "--config", str(cfg), "--alpha", "0.3", "--prompts", '["A?", "B?"]'])
    scorer, io = args.scorer, args.io
    assert scorer.alpha == 0.3  # the flag beats the file
    assert scorer.prompts == ["A?", "B?"]
    assert scorer.revision == "abc" and scorer.columns == {"instruction": "q"}
    assert io.limit == 7 and io.input == "in.json"


# -------------------------------------------------------------------- config errors


def test_unknown_yaml_key_lists_valid_options(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("alpah: 0.3\n")
    code = cli.main(["score", "in.json", "--config", str(cfg), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Unknown option 'alpah'" in err and "Did you mean 'alpha'?" in err
    for name in ("'alpha'", "'model'", "'shard_rows'", "'split'", "'model_revision'"):
        assert name in err


def test_run_config_unknown_key_in_section(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("input: x.json\nselect:\n  ratoi: 0.1\n")
    assert cli.main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "'ratoi'" in err and "'ratio'" in err and "'threshold'" in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--alpha", "-1"], "--alpha=-1.0 is invalid"),
        (["--batch-size", "many"], "--batch-size='many' is invalid: expected an integer"),
        (["--normalization", "softmax"], "normalization='softmax' is invalid: expected one of"),
        (["--columns", "{not: [valid"], "--columns='{not: [valid' is not valid JSON/YAML"),
    ],
)
def test_bad_values_exit_2_with_a_message(tmp_path, capsys, argv, words):
    data = _write_jsonl(tmp_path / "d.jsonl", _rows(2))
    code = cli.main(["score", data, "--output", str(tmp_path / "o"), *argv])
    assert code == 2
    assert words in capsys.readouterr().err


def test_missing_input_and_output(tmp_path, capsys):
    assert cli.main(["score", "--output", str(tmp_path / "o")]) == 2
    assert "No input" in capsys.readouterr().err
    data = _write_jsonl(tmp_path / "d.jsonl", _rows(2))
    assert cli.main(["score", data]) == 2
    assert "score needs --output" in capsys.readouterr().err


def test_quiet_holds_for_its_command_only(tmp_path, capsys):
    # A script or notebook that runs `main(["-q", ...])` and then prints a summary still sees it.
    data = _write_jsonl(tmp_path / "d.jsonl", _rows(2))
    assert cli.main(["-q", "select", data, "--output", str(tmp_path / "o.jsonl"), "--column", "nope"]) == 2
    capsys.readouterr()
    cli.console.info("still printed")
    assert capsys.readouterr().out == "still printed\n"


# ----------------------------------------------------------------------- end to end


def test_score_select_publish_end_to_end(tmp_path, tiny_model_dir, capsys):
    import datasets

    from hf_selectit.provenance import scorer_infos

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(10))
    scored_dir = tmp_path / "scored"
    assert cli.main(["score", data, "--model", str(tiny_model_dir), "--prompts", "2",
                     "--output", str(scored_dir), "--shard-rows", "4"]) == 0
    out = capsys.readouterr().out
    assert "rows scored        10" in out and "errors             0" in out and "rows/s" in out
    scored = datasets.load_from_disk(str(scored_dir))
    assert len(scored) == 10 and scored["instruction"] == [r["instruction"] for r in _rows(10)]
    assert scorer_infos(scored)["selectit_"]["prompts"] is not None

    subset_dir = tmp_path / "subset"
    report = tmp_path / "report.md"
    assert cli.main(["select", str(scored_dir), "--ratio", "0.3", "--output", str(subset_dir),
                     "--report", str(report)]) == 0
    assert "kept 3 of 10 rows" in capsys.readouterr().out
    assert "selectit_sentence_score" in report.read_text()
    subset = datasets.load_from_disk(str(subset_dir))
    scores = scored["selectit_sentence_score"]
    best = sorted(range(10), key=lambda i: (scores[i], i), reverse=True)[:3]
    assert subset["instruction"] == [scored["instruction"][i] for i in sorted(best)]

    pub = tmp_path / "published"
    assert cli.main(["publish", str(subset_dir), "--scored", str(scored_dir), "--repo-id", str(pub),
                     "--version", "v1.0", "--license", "apache-2.0"]) == 0
    assert "published 3 rows as v1.0" in capsys.readouterr().out
    again = datasets.load_dataset(str(pub), split="train")
    assert again["instruction"] == subset["instruction"]
    card = (pub / "README.md").read_text()
    assert "license: apache-2.0" in card

    # Publishing the same version again is refused unless --overwrite is given.
    # An existing version is a user error (exit 2) and the fix is given as the flag.
    assert cli.main(["publish", str(subset_dir), "--repo-id", str(pub), "--license", "apache-2.0"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err and "Traceback" not in err
    assert cli.main(["publish", str(subset_dir), "--repo-id", str(pub), "--license", "apache-2.0",
                     "--overwrite"]) == 0


def test_run_yaml_end_to_end_to_parquet(tmp_path, tiny_model_dir, capsys):
    import datasets

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(8))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"input: {data}\n"
        f"output: {tmp_path / 'scored.parquet'}\n"
        "shard_rows: 3\n"
        f"models:\n  - {{model: {tiny_model_dir}, column_prefix: tiny_, prompts: 2}}\n"
        "select: {k: 2, order: score}\n"
        f"publish: {{repo_id: {tmp_path / 'pub'}, version: v1, license: mit}}\n"
    )
    assert cli.main(["run", str(cfg), "--limit", "6"]) == 0
    out = capsys.readouterr().out
    assert "kept               2 (by tiny_sentence_score)" in out
    scored = datasets.load_dataset("parquet", data_files=str(tmp_path / "scored.parquet"), split="train")
    assert len(scored) == 6 and "tiny_sentence_score" in scored.column_names
    # Checkpoints (beside the output, never in its parent folder) are gone after success.
    assert not list(tmp_path.glob("*.selectit-work")) and not (tmp_path / ".selectit-work").exists()
    published = datasets.load_dataset(str(tmp_path / "pub"), split="train")
    top = sorted(scored["tiny_sentence_score"], reverse=True)[:2]
    assert published["tiny_sentence_score"] == pytest.approx(top)  # order: score, best first
    readme = (tmp_path / "pub" / "README.md").read_text()
    assert "hf-selectit" in readme
    # The run config travels with the data, and the card's Reproduce section runs it.
    assert (tmp_path / "pub" / "selectit_run.yaml").read_text() == cfg.read_text()
    assert f"hf-selectit run {tmp_path / 'pub' / 'selectit_run.yaml'}" in readme


@pytest.mark.hub
def test_run_from_hub_dataset_to_hub_repo(tmp_path, tiny_model_dir, local_hub, monkeypatch, capsys):
    """Input by Hub id (with --revision), published to a Hub repo, loaded back by version tag:
    all through the real client against the local Hub server."""
    import uuid

    import datasets
    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_TOKEN", local_hub.token)
    local_hub.fail_commits(False)
    src, dst = f"tester/cli-src-{uuid.uuid4().hex[:8]}", f"tester/cli-dst-{uuid.uuid4().hex[:8]}"
    datasets.Dataset.from_list(_rows(8)).push_to_hub(src, token=local_hub.token)
    revision = HfApi(token=local_hub.token).dataset_info(src).sha
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"input: {src}\n"
        f"models: [{{model: {tiny_model_dir}, prompts: 2}}]\n"
        "select: {ratio: 0.25}\n"
        f"publish: {{repo_id: {dst}, version: v1.0, license: mit}}\n"
    )
    assert cli.main(["run", str(cfg), "--revision", revision, "--work-dir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "kept               2" in out and dst in out
    published = datasets.load_dataset(dst, revision="v1.0", split="train")
    assert len(published) == 2 and set(published["instruction"]) <= {r["instruction"] for r in _rows(8)}
    scores = datasets.load_dataset(dst, "scores", revision="v1.0", split="train")
    assert len(scores) == 8
    from huggingface_hub import hf_hub_download

    readme = Path(hf_hub_download(dst, "README.md", repo_type="dataset", revision="v1.0")).read_text()
    assert src in readme  # the card names the source dataset
