"""Every user error on the command line is one line, exit 2, no traceback (``--debug`` shows it),
and is found before any scoring where it can be."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from hf_selectit import cli
from hf_selectit.config import SelectConfig
from hf_selectit.errors import ConfigError


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _scored(tmp_path: Path) -> str:
    return _jsonl(tmp_path / "scored.jsonl", [
        {"instruction": f"q{i}", "input": "", "output": f"a{i}", "selectit_sentence_score": float(i),
         "selectit_status": "ok"} for i in range(8)])


def _user_error(capsys, argv: list, *words: str) -> str:
    code = cli.main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("hf-selectit ")]
    assert code == 2, captured.err
    assert len(lines) == 1 and ": error: " in lines[0], captured.err
    assert "Traceback" not in captured.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


class _Bomb:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("command", ["score", "select"])
def test_output_path_problems_are_found_before_any_work(tmp_path, capsys, command, tiny_model_dir):
    data = _scored(tmp_path) if command == "select" else _jsonl(
        tmp_path / "d.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    extra = ["--k", "2"] if command == "select" else ["--model", str(tiny_model_dir)]
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    _user_error(capsys, [command, data, "--output", str(a_file), *extra], str(a_file), "existing file")
    _user_error(capsys, [command, data, "--output", str(a_file / "sub"), *extra], "is a file")
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    _user_error(capsys, [command, data, "--output", str(folder), *extra], "existing folder")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    _user_error(capsys, [command, data, "--output", str(mine), *extra], "no saved dataset")
    assert (mine / "notes.txt").read_text() == "the user's" and a_file.read_text() == "not a folder"
    assert not list(tmp_path.glob("*.selectit-work"))  # refused before anything was scored


@pytest.mark.parametrize("content", [{"notes.json": "this is not JSON {"}, {"blob.bin": "\x00\x01"}])
def test_a_folder_that_is_not_a_dataset(tmp_path, capsys, content):
    folder = tmp_path / "stuff"
    folder.mkdir()
    for name, text in content.items():
        (folder / name).write_text(text)
    _user_error(capsys, ["select", str(folder), "--k", "1", "--output", str(tmp_path / "o.jsonl")],
                str(folder), "not a dataset")


def test_a_pickle_bomb_weights_file_is_refused_in_one_line(tmp_path, tiny_model_dir, capsys, monkeypatch):
    model = tmp_path / "bad-model"
    shutil.copytree(tiny_model_dir, model)
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Bomb()))
    monkeypatch.chdir(tmp_path)
    data = _jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    _user_error(capsys, ["score", data, "--output", str(tmp_path / "o.jsonl"), "--model", str(model)],
                "not a safe PyTorch checkpoint")
    assert not (tmp_path / "PWNED").exists()


def test_a_source_card_with_a_python_tag(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    (source / "README.md").write_text("---\nlicense: !!python/object/apply:os.system ['touch PWNED']\n---\n# x\n")
    # Rows without scorer columns: the publish needs no model, only the source card.
    rows = _jsonl(tmp_path / "rows.jsonl", [{"instruction": "q", "output": "a"}])
    line = _user_error(capsys, ["publish", rows, "--repo-id", str(tmp_path / "pub"),
                                "--version", "v1", "--source", str(source)], "cannot be read safely")
    assert str(source) in line and not (tmp_path / "pub").exists()


def test_conflicting_selection_options_are_refused_everywhere(tmp_path, capsys):
    data = _scored(tmp_path)
    _user_error(capsys, ["select", data, "--ratio", "0.5", "--k", "3", "--output", str(tmp_path / "o.jsonl")],
                "--ratio=0.5", "--k=3", "exactly one")
    cfg = tmp_path / "sel.yaml"
    cfg.write_text("ratio: 0.5\nthreshold: 2\n")
    _user_error(capsys, ["select", data, "--config", str(cfg), "--output", str(tmp_path / "o.jsonl")],
                "exactly one")
    run = tmp_path / "run.yaml"
    run.write_text(f"input: {data}\noutput: {tmp_path / 'o2.jsonl'}\nmodels: [{{model: x}}]\n"
                   "select: {ratio: 0.5, k: 3}\n")
    _user_error(capsys, ["run", str(run)], "exactly one")
    with pytest.raises(ConfigError, match="exactly one"):
        SelectConfig(ratio=0.5, k=3)
    assert SelectConfig(k=3).rule()["ratio"] is None  # the default ratio yields to k, as in select_top
    assert not (tmp_path / "o.jsonl").exists()


def test_a_model_revision_on_a_local_folder_is_an_error(tmp_path, tiny_model_dir, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    _user_error(capsys, ["score", data, "--output", str(tmp_path / "o.jsonl"), "--model", str(tiny_model_dir),
                         "--model-revision", "nope"], "--model-revision", "local folder")


def test_debug_shows_the_traceback(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert cli.main(["--debug", "select", _scored(tmp_path), "--k", "1", "--output", str(a_file)]) == 2
    assert "Traceback" in capsys.readouterr().err
