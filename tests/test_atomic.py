"""Nothing half-written: outputs are renamed into place only when complete (hf_selectit/atomic.py),
a local publish killed between its two renames loses nothing, and one writer holds an output
whatever its work directory.

A full disk is a real ENOSPC raised by the write call itself: files opened for writing under the
target's temporary name get a raw file whose `write` stores up to a budget of bytes, then fails
as a full filesystem does (`disk_full` below). Everything above that call (datasets, pyarrow,
fsspec, the package) runs unchanged.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest

from hf_selectit import cli
from hf_selectit.atomic import recover, replacing
from hf_selectit.errors import OutputWriteError

REPO = Path(__file__).resolve().parents[1]


class _FullFile(io.FileIO):
    """A raw file on a filesystem with ``budget`` bytes left."""

    budget = 0
    error = errno.ENOSPC

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > type(self).budget:
            if type(self).budget > 0:
                super().write(data[: type(self).budget])
            type(self).budget = 0
            raise OSError(type(self).error, os.strerror(type(self).error), self.name)
        type(self).budget -= len(data)
        return super().write(data)


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(part, budget)``: writes to any path containing ``part`` fail with ENOSPC once
    ``budget`` bytes are written (the bytes before it land, as on a real disk)."""
    real_open = builtins.open

    def arm(part: str, budget: int = 4096, error: int = errno.ENOSPC) -> None:
        _FullFile.budget, _FullFile.error = budget, error

        def fake_open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
                      closefd=True, opener=None):
            if (isinstance(file, (str, os.PathLike)) and part in os.fspath(file)
                    and any(c in mode for c in "wax")):
                raw = _FullFile(file, mode.replace("b", "").replace("t", ""))
                buffered = io.BufferedWriter(raw) if "+" not in mode else io.BufferedRandom(raw)
                if "b" in mode:
                    return buffered
                return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors, newline=newline)
            return real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)  # pathlib's write_text opens through io.open

    yield arm
    monkeypatch.undo()


def _scored_rows(n: int = 12) -> list[dict]:
    return [{"instruction": f"instruction {i}", "input": "", "output": f"response {i} " * 20,
             "selectit_sentence_score": float((i * 7) % n), "selectit_status": "ok"} for i in range(n)]


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _one_line_error(err: str, *words: str) -> None:
    # Progress bars of datasets aside, stderr holds one error line and no traceback.
    lines = [line for line in err.splitlines() if line.startswith("hf-selectit ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def _load(path: Path):
    if path.suffix == ".jsonl":
        return datasets.load_dataset("json", data_files=str(path), split="train")
    if path.suffix == ".parquet":
        return datasets.load_dataset("parquet", data_files=str(path), split="train")
    return datasets.load_from_disk(str(path))


# ------------------------------------------------------------------------ full disk, every format


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet", "out_folder"])
@pytest.mark.parametrize("previous", [False, True])
def test_full_disk_leaves_the_previous_output_or_nothing(tmp_path, disk_full, capsys, name, previous):
    data = _jsonl(tmp_path / "scored.jsonl", _scored_rows())
    out = tmp_path / "o" / name
    if previous:
        assert cli.main(["select", data, "--k", "5", "--output", str(out)]) == 0
        capsys.readouterr()
    disk_full(f".{name}.selectit-new-", budget=300)
    code = cli.main(["select", data, "--k", "3", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    _one_line_error(err, str(out), "No space left on device")
    if previous:
        assert len(_load(out)) == 5  # the previous output, whole
    else:
        assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if ".selectit-" in p.name]  # no temporaries
    # Space freed: the same command writes it.
    disk_full("nothing-matches-this", budget=0)
    assert cli.main(["select", data, "--k", "3", "--output", str(out)]) == 0
    assert len(_load(out)) == 3


def test_full_disk_on_a_report_file(tmp_path, disk_full, capsys):
    data = _jsonl(tmp_path / "scored.jsonl", _scored_rows())
    report = tmp_path / "report.md"
    report.write_text("the previous report")
    disk_full(".report.md.selectit-new-", budget=10)
    code = cli.main(["select", data, "--k", "3", "--output", str(tmp_path / "sub.jsonl"),
                     "--report", str(report)])
    assert code == 1
    _one_line_error(capsys.readouterr().err, str(report), "No space left on device")
    assert report.read_text() == "the previous report"


def test_full_disk_in_a_run_then_rerun_resumes_from_the_checkpoints(tmp_path, tiny_model_dir, disk_full, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(6)])
    scored, subset = tmp_path / "scored.parquet", tmp_path / "subset.jsonl"
    argv = ["score", data, "--output", str(scored), "--model", str(tiny_model_dir), "--prompts", "2",
            "--shard-rows", "3"]
    # The checkpoints first: a full disk while a shard is saved.
    disk_full(".shard-00001.selectit-new-", budget=100)
    assert cli.main(argv) == 1
    _one_line_error(capsys.readouterr().err, "checkpoint of shard 1 (rows 3-5)", "No space left on device")
    assert not scored.exists()
    # Then the output: the first shard's checkpoint is reused, the second scored, the output
    # write fails.
    disk_full(".scored.parquet.selectit-new-", budget=1000)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    _one_line_error(err, str(scored), "No space left on device", "resumes from them")
    assert not scored.exists()
    disk_full("nothing-matches-this", budget=0)
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "6 from checkpoints" in out and len(_load(scored)) == 6
    # The subset of a run, too.
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"input: {data}\nsubset_output: {subset}\nwork_dir: {tmp_path / 'w'}\nshard_rows: 3\n"
                   f"models: [{{model: {tiny_model_dir}, prompts: 2}}]\nselect: {{k: 2}}\n")
    disk_full(".subset.jsonl.selectit-new-", budget=10)
    assert cli.main(["run", str(cfg)]) == 1
    _one_line_error(capsys.readouterr().err, str(subset), "No space left on device")
    assert not subset.exists()
    disk_full("nothing-matches-this", budget=0)
    assert cli.main(["run", str(cfg)]) == 0
    assert "6 from checkpoints" in capsys.readouterr().out and len(_load(subset)) == 2


def test_a_read_only_output_folder_is_one_line(tmp_path, tiny_model_dir, disk_full, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    out = tmp_path / "ro" / "scored.parquet"
    disk_full(str(tmp_path / "ro"), budget=0, error=errno.EROFS)  # nothing under it can be written
    assert cli.main(["score", data, "--output", str(out), "--model", str(tiny_model_dir)]) == 1
    _one_line_error(capsys.readouterr().err, "Read-only file system", str(out))
    assert not out.exists()


def test_replacing_keeps_the_target_on_any_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(OutputWriteError, match="previous content is unchanged"):
        with replacing(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(KeyboardInterrupt):
        with replacing(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


# ------------------------------------------------------------------------- local publish, killed


def _publish_script(target: Path, version: str, kill_at: str) -> str:
    """A publish in a child process that SIGKILLs itself at one of the swap's renames."""
    return textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.test_publish_local import make_scored
        from hf_selectit import publish, select_top
        real = os.replace
        def replace(src, dst, *a, **k):
            src, dst = os.fspath(src), os.fspath(dst)
            moving = ".selectit-old-" in dst if {kill_at!r} == "first" else ".selectit-new-" in src
            if moving:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, *a, **k)
        os.replace = replace
        scored = make_scored(20)
        publish(select_top(scored, k=3), {str(target)!r}, version={version!r}, scored=scored,
                card_data={{"license": "mit"}})
    """)


@pytest.mark.parametrize("kill_at", ["first", "second"])
def test_a_local_publish_killed_between_its_renames_loses_nothing(tmp_path, kill_at):
    from tests.test_publish_local import make_scored

    from hf_selectit import publish, select_top
    from hf_selectit.publishing import list_versions, load_selective

    scored = make_scored(20)
    target = tmp_path / "pub"
    publish(select_top(scored, k=5), target, version="v1.0", scored=scored, card_data={"license": "mit"})
    (target / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-c", _publish_script(target, "v2.0", kill_at)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    left = sorted(p.name for p in tmp_path.iterdir())
    if kill_at == "second":
        # The window: the previous version moved aside, the new one not yet in place.
        assert "pub" not in left and any(".pub.selectit-old-" in n for n in left), left
    else:
        assert "pub" in left and any(".pub.selectit-new-" in n for n in left), left
    # A load puts the previous version back, whole.
    assert load_selective(target).num_rows == 5
    assert list_versions(target) == ["v1.0"] and (target / "notes.txt").read_text() == "mine"
    # The next publish keeps the history and leaves no temporary folder behind.
    publish(select_top(scored, k=2), target, version="v3.0", scored=scored, card_data={"license": "mit"})
    assert list_versions(target) == ["v1.0", "v3.0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pub"]
    assert (target / "notes.txt").read_text() == "mine"


def test_recover_leaves_a_live_writers_temporaries_alone(tmp_path):
    target = tmp_path / "out"
    live = tmp_path / f".out.selectit-new-{os.getppid()}"  # the test runner's parent: alive
    dead = tmp_path / ".out.selectit-new-999999999"
    live.mkdir()
    dead.mkdir()
    recover(target)
    assert live.exists() and not dead.exists() and not target.exists()


# -------------------------------------------------------------------------- one writer per output


def test_the_lock_is_keyed_on_the_output_not_the_work_dir(tmp_path, tiny_model_dir, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    out = tmp_path / "scored.parquet"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom hf_selectit.runner import default_work_dir, output_lock\n"
         f"with output_lock(default_work_dir({str(out)!r})):\n"
         "    print('locked', flush=True); time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--work-dir", str(tmp_path / "elsewhere")]):
            code = cli.main(["score", data, "--output", str(out), "--model", str(tiny_model_dir), *extra])
            err = capsys.readouterr().err
            assert code == 1 and "Another hf-selectit run is writing" in err, err
            assert f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()
