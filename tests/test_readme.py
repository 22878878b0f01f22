"""The README's code blocks run as written, so the README cannot drift from the package.

Every ```python and ```bash block of README.md is extracted and run in README order, in a scratch
folder, by a fresh interpreter (tests/readme_runner.py): Python blocks share one namespace, as in
one session; bash blocks run with `bash -euo pipefail` and the package's `hf-selectit` on PATH.
```yaml blocks must load as `hf-selectit run` configs.

The one switch (documented in the README's Development section): the blocks run against the
test suite's local Hub (`HF_ENDPOINT`), where every Hub id the README names holds a stand-in:
the tiny test model (tests/tiny_lm.py) under each model id in `STAND_IN_MODELS`, a few Alpaca
rows (from the bundled demo set, with the source's license and language in its card) under each
dataset id in `STAND_IN_DATASETS`; a `data.jsonl` of such rows is in the scratch folder, and a
repository-level `configs/` folder, when there is one, is copied there. The text of the blocks is not changed. A new Hub id in
the README must be added to those tables (the static test says so).

Markers, an HTML comment on the line before a block:
- `<!-- readme-test: skip (reason) -->`: not run (e.g. needs GPUs, runs the test suite itself);
  each is reported as a skipped test with its reason.
- `<!-- readme-test: slow -->`: run only under `-m slow` (e.g. the embedded SmolLM2), each such
  block on its own, so it must not need earlier blocks.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
RUNNER = Path(__file__).with_name("readme_runner.py")

# Hub ids named in the README, and what stands in for them on the local Hub.
STAND_IN_MODELS = (
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-13b-hf",
    "meta-llama/Llama-2-70b-hf",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "hkust-nlp/deita-quality-scorer",
    "hkust-nlp/deita-complexity-scorer",
)
STAND_IN_DATASETS = {"vicgalle/alpaca-gpt4": {"license": "cc-by-nc-4.0", "language": ["en"]}}
# Namespaces the README publishes into (created on the local Hub by the blocks themselves).
PUBLISH_NAMESPACES = ("me", "your-name")
STAND_IN_ROWS = 10

_FENCE = re.compile(r"^(?P<fence>`{3,})(?P<lang>[A-Za-z0-9_+-]*)[^\n]*\n(?P<code>.*?)^(?P=fence)[ \t]*$",
                    re.S | re.M)
_MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<mode>skip|slow)\s*(?:\((?P<reason>[^)]*)\))?\s*-->")
_HUB_ID = re.compile(r"(?<![\w./-])([A-Za-z][\w-]*/[A-Za-z0-9][\w.-]*)(?![\w/-])")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str
    mode: str            # "run", "slow" or "skip"
    reason: Optional[str]

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}-{self.mode}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced python/bash/yaml blocks of `text`, with the marker of the line before each."""
    blocks = []
    for match in _FENCE.finditer(text):
        lang = match.group("lang").lower()
        if lang not in ("python", "bash", "yaml"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        mode = marker.group("mode") if marker else "run"
        reason = (marker.group("reason") or "").strip() if marker else None
        blocks.append(Block(line=line, lang=lang, code=match.group("code"), mode=mode, reason=reason))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.lang in ("python", "bash")]


# --- static checks (no model, no Hub) -----------------------------------------------------------


def test_readme_has_runnable_blocks_and_markers_are_explained():
    assert [b for b in RUNNABLE if b.mode == "run" and b.lang == "python"], "no runnable Python block"
    assert [b for b in RUNNABLE if b.mode == "run" and b.lang == "bash"], "no runnable shell block"
    for block in BLOCKS:
        if block.mode == "skip":
            assert block.reason, f"README.md:{block.line}: a skip marker needs a reason: (why)"
    development = README.read_text(encoding="utf-8").split("## Development", 1)[-1]
    assert "tests/test_readme.py" in development and "readme-test: skip" in development


def _bound_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def test_python_blocks_compile_and_use_only_names_they_define():
    """Each Python block, read top to bottom as one session, defines or imports every name it
    uses (the chat example once used `Dataset` without importing it). Slow and skipped blocks
    are checked too; a slow block must stand on its own."""
    known = set(dir(builtins))
    session: set[str] = set()
    problems = []
    for block in (b for b in BLOCKS if b.lang == "python"):
        tree = ast.parse(block.code, filename=f"README.md:{block.line}")
        own = _bound_names(tree)
        available = known | own | (session if block.mode == "run" else set())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        missing = sorted(used - available)
        if missing:
            problems.append(f"README.md:{block.line}: {missing} used but never imported or defined"
                            + ("" if block.mode == "run" else " in this block (slow/skip blocks stand alone)"))
        if block.mode == "run":
            session |= own
    assert not problems, "\n".join(problems)


def test_yaml_blocks_are_valid_run_configs(tmp_path):
    try:
        from hf_selectit.options import load_pipeline_config
    except ImportError:
        from hf_selectit.pipeline import load_pipeline_config

    for block in (b for b in BLOCKS if b.lang == "yaml"):
        path = tmp_path / f"readme_{block.line}.yaml"
        path.write_text(block.code, encoding="utf-8")
        config = load_pipeline_config(path)
        assert config.models, f"README.md:{block.line}: no model in the run config"


def test_every_hub_id_in_the_blocks_has_a_stand_in():
    known = set(STAND_IN_MODELS) | set(STAND_IN_DATASETS)
    unknown = set()
    for block in BLOCKS:
        for match in _HUB_ID.finditer(block.code):
            name = match.group(1)
            namespace = name.split("/")[0]
            if name in known or namespace in PUBLISH_NAMESPACES:
                continue
            if block.code[match.end():match.end() + 1] == "{":
                # An f-string template such as "meta-llama/Llama-2-{size}-hf": an expansion
                # without a stand-in fails when the block runs (the local Hub answers 404).
                continue
            # Local paths (scored/, configs/x.yaml, scripts/x.py) are not Hub ids.
            if Path(name).suffix in (".yaml", ".yml", ".py", ".json", ".jsonl", ".md", ".parquet", ".csv") or \
                    namespace in ("configs", "scripts", "docs", "tests", "runs", "hf_selectit", "shared"):
                continue
            unknown.add(f"README.md:{block.line}: {name}")
    assert not unknown, (f"Hub ids without a stand-in on the local Hub: {sorted(unknown)}. Add them to "
                         "STAND_IN_MODELS / STAND_IN_DATASETS in tests/test_readme.py.")


# --- running the blocks -----------------------------------------------------------------------


def _alpaca_rows(n: int) -> list[dict]:
    path = REPO_ROOT / "hf_selectit" / "data" / "demo.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in rows[:n]]


def _seed_hub(hub, model_dir: Path, tmp: Path) -> None:
    from datasets import Dataset
    from huggingface_hub import HfApi

    api = HfApi(token=hub.token)
    for model in STAND_IN_MODELS:
        api.create_repo(model, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(model_dir), repo_id=model, repo_type="model")
    for dataset, card in STAND_IN_DATASETS.items():
        folder = tmp / "stand-in" / dataset
        (folder / "data").mkdir(parents=True, exist_ok=True)
        Dataset.from_list(_alpaca_rows(STAND_IN_ROWS)).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
        header = "\n".join([f"license: {card['license']}", "language:"] + [f"- {x}" for x in card["language"]])
        (folder / "README.md").write_text(f"---\n{header}\n---\n# Stand-in for {dataset}\n", encoding="utf-8")
        api.create_repo(dataset, repo_type="dataset", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=dataset, repo_type="dataset")


def _scratch(tmp: Path) -> Path:
    work = tmp / "work"
    work.mkdir()
    with (work / "data.jsonl").open("w", encoding="utf-8") as fh:
        for row in _alpaca_rows(STAND_IN_ROWS):
            fh.write(json.dumps(row) + "\n")
    if (REPO_ROOT / "configs").is_dir():
        shutil.copytree(REPO_ROOT / "configs", work / "configs")
    return work


def _run_blocks(blocks: list[Block], work: Path, hub) -> dict[int, dict]:
    blocks_file = work.parent / "blocks.json"
    results_file = work.parent / "results.json"
    blocks_file.write_text(json.dumps([{"line": b.line, "lang": b.lang, "code": b.code} for b in blocks]))
    env = dict(os.environ)
    env["HF_TOKEN"] = hub.token                     # the README's publish reads HF_TOKEN
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, str(RUNNER), str(blocks_file), str(results_file)], cwd=work,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    by_line = {r["line"]: r for r in results}
    # Shown with `pytest -s`: where the README run spends its time.
    print("README blocks:", ", ".join(f"L{r['line']} {r['seconds']}s" for r in results))
    if len(by_line) != len(blocks):
        pytest.fail(f"The README runner stopped early (status {proc.returncode}):\n{proc.stdout[-4000:]}")
    return by_line


@pytest.fixture(scope="module")
def readme_run(local_hub, tiny_model_dir, tmp_path_factory):
    import time

    tmp = tmp_path_factory.mktemp("readme")
    t0 = time.perf_counter()
    _seed_hub(local_hub, tiny_model_dir, tmp)
    print(f"README stand-ins seeded in {time.perf_counter() - t0:.1f}s")
    return _run_blocks([b for b in RUNNABLE if b.mode == "run"], _scratch(tmp), local_hub)


def _check(block: Block, result: dict) -> None:
    if not result["ok"]:
        pytest.fail(f"README.md line {block.line} ({block.lang} block) failed:\n--- block ---\n"
                    f"{block.code}--- output (tail) ---\n{result['output']}", pytrace=False)


@pytest.mark.hub
@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.mode != "slow"], ids=lambda b: b.id)
def test_readme_block_runs(block, request):
    if block.mode == "skip":
        pytest.skip(f"README.md line {block.line} is marked skip: {block.reason}")
    result = request.getfixturevalue("readme_run")[block.line]
    _check(block, result)


@pytest.mark.slow
@pytest.mark.hub
@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.mode == "slow"], ids=lambda b: b.id)
def test_readme_slow_block_runs(block, local_hub, tiny_model_dir, tmp_path):
    _seed_hub(local_hub, tiny_model_dir, tmp_path)
    result = _run_blocks([block], _scratch(tmp_path), local_hub)[block.line]
    _check(block, result)
