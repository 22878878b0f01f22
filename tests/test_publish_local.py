"""Publishing to a local directory: files, round trip through `load_dataset(dir)`, versions."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from datasets import Dataset, load_dataset
from huggingface_hub import DatasetCard

from hf_selectit.errors import ConfigError, VersionExistsError
from hf_selectit.provenance import attach_scorer_info
from hf_selectit.publishing import is_local_target, list_versions, load_selective, publish
from hf_selectit.select import select_top

FAKE_TOKEN = "hf_selectitFakeTokenDoNotLeak0123456789"


def make_scored(n: int = 20, *, offset: float = 0.0) -> Dataset:
    """A dataset shaped like the scorer's output (no model involved), with scorer provenance."""
    scores = [round(((i * 7) % n) / 4 + offset, 3) for i in range(n)]
    ds = Dataset.from_dict({
        "instruction": [f"instruction {i}" for i in range(n)],
        "input": ["" for _ in range(n)],
        "output": [f"response {i}" for i in range(n)],
        "selectit_token_scores": [[s, s, s] for s in scores],
        "selectit_sentence_score": scores,
        "selectit_uncertainty": [0.0] * n,
        "selectit_status": ["ok"] * n,
    })
    return attach_scorer_info(ds, {
        "column_prefix": "selectit_", "model_id": "tiny/random-llama", "revision": "0123abcd",
        "parameter_count": 1_234_567, "prompts": ["prompt one", "prompt two", "prompt three"],
        "prompt_set": "paper", "alpha": 0.2, "normalization": "paper",
    })


def _all_text(root) -> str:
    chunks = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as fh:
                chunks.append(fh.read().decode("latin-1"))
    return "\n".join(chunks)


def test_local_round_trip_through_load_dataset(tmp_path):
    scored = make_scored(20)
    subset = select_top(scored, ratio=0.25)
    target = tmp_path / "Selective-Demo"
    result = publish(subset, str(target), version="v1.0", scored=scored, card_data={"license": "mit"})

    assert result.local and result.rows == 5 and result.scored_rows == 20
    for name in ("README.md", "selectit.json", "selectit_histogram.png",
                 "data/train-00000-of-00001.parquet", "scores/train-00000-of-00001.parquet"):
        assert (target / name).is_file(), name
    assert (target / "selectit_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    loaded = load_dataset(str(target), split="train")
    assert loaded["instruction"] == subset["instruction"]          # same rows, same order
    assert loaded["selectit_sentence_score"] == subset["selectit_sentence_score"]
    scores = load_dataset(str(target), "scores", split="train")
    assert scores.num_rows == 20 and scores["instruction"] == scored["instruction"]

    prov = json.loads((target / "selectit.json").read_text())
    assert prov["version"] == "v1.0"
    assert prov["rows"] == {"subset": 5, "scored": 20}
    assert prov["scorers"]["selectit_"]["model_id"] == "tiny/random-llama"
    assert prov["alpha"] == 0.2 and prov["normalization"] == "paper"
    assert prov["selection"]["rule"] == "top_ratio" and prov["selection"]["ratio"] == 0.25
    assert prov["source"]["fingerprint"] == scored._fingerprint
    assert prov["created_at"].endswith("+00:00")
    assert sorted(prov["files"]) == sorted(result.files)

    card = DatasetCard.load(target / "README.md")
    assert card.data.license == "mit"
    assert [c["config_name"] for c in card.data.configs] == ["default", "scores"]


def test_load_selective_local_and_version_check(tmp_path):
    scored = make_scored(12)
    publish(select_top(scored, k=3), tmp_path / "out", version="v2", card_data={"license": "mit"})
    ds = load_selective(tmp_path / "out")
    assert ds.num_rows == 3
    with pytest.raises(ConfigError, match="'v2'"):
        load_selective(tmp_path / "out", "v1")
    assert list_versions(tmp_path / "out") == ["v2"]


def test_versions_refused_replaced_and_recorded(tmp_path):
    scored = make_scored(20)
    target = tmp_path / "d"
    publish(select_top(scored, ratio=0.25), target, version="v1.0", scored=scored,
            card_data={"license": "mit"})
    publish(select_top(scored, ratio=0.5), target, version="v1.1", card_data={"license": "mit"})
    assert load_dataset(str(target), split="train").num_rows == 10
    # v1.1 had no scored dataset: the old scores/ config must not survive into it.
    assert not (target / "scores").exists()
    header = yaml.safe_load((target / "README.md").read_text().split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == ["default"]

    with pytest.raises(VersionExistsError) as info:
        publish(select_top(scored, k=2), target, version="v1.1", card_data={"license": "mit"})
    assert "v1.0" in str(info.value) and "v1.1" in str(info.value) and "overwrite=True" in str(info.value)
    assert load_dataset(str(target), split="train").num_rows == 10      # untouched

    result = publish(select_top(scored, k=2), target, version="v1.1", overwrite=True,
                     card_data={"license": "mit"})
    assert result.replaced
    assert load_dataset(str(target), split="train").num_rows == 2
    assert list_versions(target) == ["v1.0", "v1.1"]
    readme = (target / "README.md").read_text()
    assert "| `v1.0` |" in readme and "| `v1.1` |" in readme
    # The staging directory is gone.
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["README.md", "data", "selectit.json", "selectit_histogram.png"])


@pytest.mark.parametrize("bad", ["v1.2.3.4", "v", "V1", "v1.x", "latest", "v1.0-rc1", None, "v1.0\n",
                                 " v1", "v1 .0", "v\uff11", "v1.\u0661", "vv1", "", 1.0])
def test_bad_versions_are_refused(tmp_path, bad):
    with pytest.raises(ConfigError, match="v1.2.3"):
        publish(make_scored(4), tmp_path / "x", version=bad, card_data={"license": "mit"})
    assert not (tmp_path / "x").exists()


def test_missing_license_fails_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="license"):
        publish(make_scored(4), tmp_path / "x", version="v1")
    assert not (tmp_path / "x").exists()


def test_refuses_foreign_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        publish(make_scored(4), tmp_path, version="v1", card_data={"license": "mit"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_branch_is_refused_for_local_and_dataset_dict(tmp_path):
    from datasets import DatasetDict

    with pytest.raises(ConfigError, match="branch"):
        publish(make_scored(4), tmp_path / "x", version="v1", branch="dev", card_data={"license": "mit"})
    with pytest.raises(ConfigError, match=r"ds\['train'\]"):
        publish(DatasetDict(train=make_scored(4)), tmp_path / "x", version="v1", card_data={"license": "mit"})


def test_local_target_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_local_target("me/Selective-Alpaca")
    assert not is_local_target("Selective-Alpaca")
    for path in ("./out", "../out", "~/out", str(tmp_path / "new"), "a/b/c", tmp_path):
        assert is_local_target(path), path
    (tmp_path / "me" / "existing").mkdir(parents=True)
    assert is_local_target("me/existing")                # an existing directory wins


def test_env_token_is_written_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    scored = make_scored(10)
    publish(select_top(scored, ratio=0.5), tmp_path / "t", version="v1", scored=scored,
            card_data={"license": "mit"})
    assert FAKE_TOKEN not in _all_text(tmp_path / "t")


def test_large_datasets_are_sharded_in_row_order(tmp_path, monkeypatch):
    from hf_selectit import publishing as publish_module

    # Shards of ~4 KB instead of ~500 MB, so a small dataset spans several files.
    monkeypatch.setattr(publish_module, "SHARD_BYTES", 4096)
    scored = make_scored(400)
    subset = select_top(scored, ratio=0.5)
    result = publish(subset, tmp_path / "big", version="v1", scored=scored, card_data={"license": "mit"})
    data_files = [f for f in result.files if f.startswith("data/")]
    assert len(data_files) > 1
    assert data_files[-1].endswith(f"-of-{len(data_files):05d}.parquet")
    assert load_dataset(str(tmp_path / "big"), split="train")["instruction"] == subset["instruction"]
    assert load_dataset(str(tmp_path / "big"), "scores", split="train")["instruction"] == scored["instruction"]


def test_version_without_v_is_published_as_its_v_tag(tmp_path):
    from hf_selectit.publishing import check_version

    assert check_version("1.2") == "v1.2" and check_version("v1.2.3") == "v1.2.3"
    result = publish(select_top(make_scored(10), k=2), tmp_path / "x", version="2",
                     card_data={"license": "mit"})
    assert result.version == "v2" and list_versions(tmp_path / "x") == ["v2"]


def test_empty_subset_is_refused_before_writing(tmp_path):
    scored = make_scored(10)
    empty = select_top(scored, threshold=1e9)
    assert empty.num_rows == 0
    with pytest.raises(ConfigError, match="no rows.*threshold=1000000000.0.*nothing was written"):
        publish(empty, tmp_path / "x", version="v1", scored=scored, card_data={"license": "mit"})
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="scored dataset .* has no rows"):
        publish(select_top(scored, k=2), tmp_path / "x", version="v1", scored=scored.select([]),
                card_data={"license": "mit"})
    assert not (tmp_path / "x").exists()


def _assert_previous_version_intact(target, subset, notes: str) -> None:
    assert json.loads((target / "selectit.json").read_text())["version"] == "v1.0"
    assert "v1.0" in (target / "README.md").read_text()
    assert load_dataset(str(target), split="train")["instruction"] == subset["instruction"]
    assert load_dataset(str(target), "scores", split="train").num_rows == 20
    assert (target / "notes.txt").read_text() == notes
    # No half-built folder is left beside it.
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.parametrize("failing_step", ["staging", "swap"])
def test_failed_local_publish_leaves_previous_version_complete(tmp_path, monkeypatch, failing_step):
    """A failure at any step of a local publish leaves the previous version complete and
    loadable, and says so; a retry then publishes the new version."""
    from hf_selectit.errors import PublishError

    scored = make_scored(20)
    root = tmp_path / "parent"
    root.mkdir()
    target = root / "pub"
    v1 = select_top(scored, ratio=0.25)
    publish(v1, target, version="v1.0", scored=scored, card_data={"license": "mit"})
    (target / "notes.txt").write_text("the user's own file")  # not the publisher's: kept as is

    if failing_step == "staging":
        # The path where the new version is built is occupied (by a file).
        occupied = root / f".pub.selectit-new-{os.getpid()}"
        occupied.write_text("in the way")
    else:
        # Moving the built version into place fails (a real rename, refused for that path only).
        real_replace = os.replace

        def refuse_new_version(src, dst, *args, **kwargs):
            if ".selectit-new-" in os.fspath(src):
                raise OSError(16, "Device or resource busy", os.fspath(dst))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", refuse_new_version)

    with pytest.raises(PublishError) as info:
        publish(select_top(scored, k=2), target, version="v2.0", scored=scored, card_data={"license": "mit"})
    message = str(info.value)
    assert "v2.0" in message and "previous version v1.0 is unchanged" in message
    assert ("writing the files" if failing_step == "staging" else "moving the new version") in message
    if failing_step == "staging":
        occupied.unlink()
    monkeypatch.undo()
    _assert_previous_version_intact(target, v1, "the user's own file")

    publish(select_top(scored, k=2), target, version="v2.0", scored=scored, card_data={"license": "mit"})
    assert load_dataset(str(target), split="train").num_rows == 2
    assert list_versions(target) == ["v1.0", "v2.0"]
    assert (target / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in root.iterdir()) == ["pub"]


def test_first_local_publish_that_fails_leaves_nothing(tmp_path, monkeypatch):
    from hf_selectit.errors import PublishError

    scored = make_scored(20)
    target = tmp_path / "pub"
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst, *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device"))
                        if ".selectit-new-" in os.fspath(src) else real_replace(src, dst, *a, **k))
    with pytest.raises(PublishError, match="holds no published version"):
        publish(select_top(scored, k=2), target, version="v1.0", card_data={"license": "mit"})
    assert not target.exists() and not list(tmp_path.iterdir())


def test_package_level_publish_is_the_function_whatever_was_imported_first():
    # The module is `publishing`, so importing it never shadows `hf_selectit.publish` (the
    # function) with a submodule, as a module named `publish` did.
    import hf_selectit.pipeline  # noqa: F401  (imports the publishing module)
    import hf_selectit.publishing as publishing
    from hf_selectit import publish as package_publish

    assert package_publish is publishing.publish
