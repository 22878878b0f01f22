"""No Hub token leaves the machine or reaches a log (hf_selectit/redaction.py and its users).

The end-to-end test plants a token three ways (HF_TOKEN, `model_kwargs: {token: ...}` in a run
YAML, and `--model-kwargs '{"token": ...}'` on a command line) and greps every file the runs
write (outputs, work dir with checkpoints, summaries, the LOCK file, the published repo's whole
git history on the local Hub server) and everything printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hf_selectit import cli
from hf_selectit.redaction import HIDDEN, redact, redact_mapping, redact_yaml

# Shaped like a real token (hf_ + 34 letters and digits).
PLANTED = "hf_PlantedSecretToken0123456789abcdEF"


def test_redact_text_hides_every_form_of_a_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "an-env-token-value")
    text = ('--model-kwargs {"token": "abc123"} token=xyz --token qqq; '
            f"key {PLANTED} and an-env-token-value")
    out = redact(text)
    for secret in ("abc123", "xyz", "qqq", PLANTED, "an-env-token-value"):
        assert secret not in out
    assert out.count(HIDDEN) == 5
    # Words that only contain "token" are left alone.
    plain = "mean token loss; S_token = 3; pad_token: </s>; max_tokens=5; hf_selectit_score"
    assert redact(plain) == plain


def test_redact_mapping_and_yaml():
    data = {"models": [{"model": "m", "model_kwargs": {"token": "abc", "attn_implementation": "sdpa"},
                        "vllm_kwargs": {"hf_token": "def", "pad_token": "</s>"}}],
            "note": f"see {PLANTED}", "login": {"token": True}}
    clean = redact_mapping(data)
    assert clean["models"][0]["model_kwargs"] == {"token": HIDDEN, "attn_implementation": "sdpa"}
    assert clean["models"][0]["vllm_kwargs"] == {"hf_token": HIDDEN, "pad_token": "</s>"}
    assert clean["note"] == f"see {HIDDEN}" and clean["login"] == {"token": True}
    text = "# my run\nmodels:\n  - {model: m, model_kwargs: {token: abc}}\n"
    assert "abc" not in redact_yaml(text) and HIDDEN in redact_yaml(text)
    clean_text = "# my run\nselect: {ratio: 0.2}\n"
    assert redact_yaml(clean_text) == clean_text  # nothing secret: uploaded byte for byte


def _rows(n: int) -> list[dict]:
    return [{"instruction": f"Write the number {i} in words.", "input": "",
             "output": f"The number is {i}." if i % 3 else "No."} for i in range(n)]


def _all_files_text(root: Path) -> dict:
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            found[str(path)] = path.read_bytes().decode("latin-1")
    return found


def _git_history_text(repo_dir: Path) -> str:
    """Every blob of every commit of a bare repo on the local Hub server, as text."""
    revs = subprocess.run(["git", "-C", str(repo_dir), "rev-list", "--all"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert revs, repo_dir
    chunks = []
    for rev in revs:
        files = subprocess.run(["git", "-C", str(repo_dir), "ls-tree", "-r", "--name-only", rev],
                               capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            blob = subprocess.run(["git", "-C", str(repo_dir), "show", f"{rev}:{name}"],
                                  capture_output=True, check=True).stdout
            chunks.append(blob.decode("latin-1"))
        chunks.append(subprocess.run(["git", "-C", str(repo_dir), "log", "--format=%B", rev],
                                     capture_output=True, text=True, check=True).stdout)
    return "\n".join(chunks)


@pytest.mark.hub
def test_a_planted_token_reaches_no_file_no_commit_and_no_output(tmp_path, tiny_model_dir, local_hub,
                                                                 monkeypatch, capsys):
    # The Hub token of the environment (the local server accepts only this one for writes).
    monkeypatch.setenv("HF_TOKEN", local_hub.token)
    local_hub.fail_commits(False)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(6)))
    repo = f"tester/secret-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"input: {data}\n"
        f"output: {out / 'scored.parquet'}\n"
        f"subset_output: {out / 'subset.jsonl'}\n"
        f"summary_json: {out / 'summary.json'}\n"
        f"work_dir: {tmp_path / 'work'}\n"
        "keep_checkpoints: true\n"
        "shard_rows: 3\n"
        f"models:\n  - {{model: {tiny_model_dir}, prompts: 2, model_kwargs: {{token: {PLANTED}}}}}\n"
        "select: {k: 2}\n"
        f"publish: {{repo_id: {repo}, version: v1.0, license: mit}}\n")
    assert cli.main(["-vv", "run", str(cfg)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr()

    # The same token as a flag: recorded in the LOCK file of a run that is still going.
    flagged = tmp_path / "flagged.parquet"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         f"sys.argv = ['hf-selectit', 'score', '--model-kwargs', '{{\"token\": \"{PLANTED}\"}}']\n"
         "from hf_selectit.runner import default_work_dir, output_lock\n"
         f"with output_lock(default_work_dir({str(flagged)!r})):\n"
         "    print('locked', flush=True); time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = Path(f"{flagged}.selectit-work") / "LOCK"
        lock_text = lock.read_text()
        assert "--model-kwargs" in lock_text
        # A second run on that output is refused; its message names the holder's command.
        code = cli.main(["score", str(data), "--output", str(flagged), "--model", str(tiny_model_dir),
                         "--model-kwargs", json.dumps({"token": PLANTED})])
        locked = capsys.readouterr()
        assert code == 1 and "Another hf-selectit run is writing" in locked.err
    finally:
        holder.kill()
        holder.wait()

    texts = {"stdout": printed.out, "stderr": printed.err, "lock": lock_text,
             "locked stdout": locked.out, "locked stderr": locked.err}
    texts.update(_all_files_text(tmp_path))
    del texts[str(cfg)]  # the user's own file, where the token was planted
    repo_dir = Path(local_hub.repos_dir) / "datasets" / repo
    texts["hub history"] = _git_history_text(repo_dir)
    texts.update(_all_files_text(repo_dir))  # LFS objects (the parquet files) are plain files
    assert "selectit_run.yaml" in texts["hub history"] or HIDDEN in texts["hub history"]
    for secret in (PLANTED, local_hub.token):
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"{secret} found in {leaks}"
    # What was checked is really there: checkpoints, outputs, the uploaded run config.
    assert list((tmp_path / "work").rglob("part-*.parquet")) and (out / "summary.json").is_file()
    assert (out / "subset.jsonl").is_file() and (out / "scored.parquet").is_file()
    assert f"token: {HIDDEN}" in texts["hub history"]
