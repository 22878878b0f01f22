"""Publishing to a Hub repo, against the real HTTP server of tests/local_hub.py (no mocks)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard, HfApi, hf_hub_download

from hf_selectit.errors import ConfigError, PublishError, VersionExistsError
from hf_selectit.publishing import list_versions, load_selective, publish
from hf_selectit.select import select_top
from tests.test_publish_local import make_scored

pytestmark = pytest.mark.hub


@pytest.fixture
def hub(local_hub, monkeypatch):
    """The local Hub with its token in HF_TOKEN (the way most users pass it) and a fresh repo id."""
    monkeypatch.setenv("HF_TOKEN", local_hub.token)
    local_hub.fail_commits(False)
    local_hub.fail_tags(False)
    yield local_hub
    local_hub.fail_commits(False)
    local_hub.fail_tags(False)
    if not local_hub.running:
        local_hub.start()


def _repo(name: str) -> str:
    return f"tester/{name}-{uuid.uuid4().hex[:8]}"


def _tags(repo: str, token: str) -> dict[str, str]:
    refs = HfApi(token=token).list_repo_refs(repo, repo_type="dataset")
    return {t.name: t.target_commit for t in refs.tags}


def _card(repo: str, revision: str) -> DatasetCard:
    # DatasetCard.load reads the default branch only; fetch the README of the tag instead.
    return DatasetCard.load(Path(hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision)))


def _files_text(repo: str, revision: str, token: str) -> dict[str, bytes]:
    api = HfApi(token=token)
    out = {}
    for name in api.list_repo_files(repo, repo_type="dataset", revision=revision):
        path = hf_hub_download(repo, name, repo_type="dataset", revision=revision, token=token)
        out[name] = Path(path).read_bytes()
    return out


def test_two_versions_load_by_revision_with_card_and_scores(hub):
    repo = _repo("Selective-Demo")
    scored = make_scored(20)
    sub_10 = select_top(scored, ratio=0.25)
    scored_11 = make_scored(20, offset=1.0)
    sub_11 = select_top(scored_11, ratio=0.5, order="score")

    r10 = publish(sub_10, repo, version="v1.0", scored=scored, card_data={"license": "mit"})
    r11 = publish(sub_11, repo, version="v1.1", scored=scored_11,
                  card_data={"license": "mit", "reproduce_command": "hf-selectit run demo.yaml"})
    assert r10.commit and r11.commit and r10.commit != r11.commit
    assert _tags(repo, hub.token) == {"v1.0": r10.commit, "v1.1": r11.commit}

    v10 = load_dataset(repo, revision="v1.0", split="train")
    v11 = load_dataset(repo, revision="v1.1", split="train")
    assert v10["instruction"] == sub_10["instruction"] and v10.num_rows == 5
    assert v11["instruction"] == sub_11["instruction"] and v11.num_rows == 10
    assert v11["selectit_sentence_score"] == sorted(v11["selectit_sentence_score"], reverse=True)
    scores = load_dataset(repo, "scores", revision="v1.0", split="train")
    assert scores.num_rows == 20 and scores["instruction"] == scored["instruction"]
    assert load_selective(repo)["instruction"] == sub_11["instruction"]        # latest = v1.1
    assert load_selective(repo, "v1.0", "scores").num_rows == 20
    assert list_versions(repo) == ["v1.0", "v1.1"]

    card = _card(repo, "v1.1")
    data = card.data.to_dict()
    assert data["license"] == "mit"
    assert {c["config_name"]: c["data_files"][0]["path"] for c in data["configs"]} == {
        "default": "data/train-*", "scores": "scores/train-*"}
    assert set(data["tags"]) >= {"selectit", "data-selection", "instruction-tuning"}
    assert data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-generation"]
    body = card.text
    assert "![Score histogram" in body and "selectit_histogram.png" in body
    assert f"load_dataset('{repo}', revision='v1.1', split='train')" in body
    assert "| `v1.0` |" in body and "| `v1.1` |" in body            # changelog from the tags
    assert "2402.16705" in body and "Wong, Derek F." in body
    assert "hf-selectit run demo.yaml" in body and "best first" in body
    assert "tiny/random-llama" in body and "1,234,567" in body

    files = _files_text(repo, "v1.1", hub.token)
    assert files["selectit_histogram.png"][:8] == b"\x89PNG\r\n\x1a\n"
    prov = json.loads(files["selectit.json"])
    assert prov["version"] == "v1.1" and prov["rows"] == {"subset": 10, "scored": 20}
    assert prov["selection"]["order"] == "score" and prov["scorers"]["selectit_"]["revision"] == "0123abcd"
    # The token the client used (from HF_TOKEN) is in none of the pushed files, at any version.
    for rev in ("v1.0", "v1.1"):
        for name, content in _files_text(repo, rev, hub.token).items():
            assert hub.token.encode() not in content, name


def test_republish_refused_then_overwritten(hub):
    repo = _repo("Selective-Over")
    scored = make_scored(20)
    first = publish(select_top(scored, ratio=0.5), repo, version="v1.1", scored=scored,
                    card_data={"license": "mit"})
    with pytest.raises(VersionExistsError) as info:
        publish(select_top(scored, k=3), repo, version="v1.1", card_data={"license": "mit"})
    assert "v1.1" in str(info.value) and "overwrite=True" in str(info.value)
    assert _tags(repo, hub.token) == {"v1.1": first.commit}

    second = publish(select_top(scored, k=3), repo, version="v1.1", overwrite=True,
                     card_data={"license": "mit"})
    assert second.replaced and second.commit != first.commit
    assert _tags(repo, hub.token) == {"v1.1": second.commit}
    assert load_dataset(repo, revision="v1.1", split="train").num_rows == 3
    # The new version has no scores config: the old scores/ shards were deleted in its commit.
    files = HfApi(token=hub.token).list_repo_files(repo, repo_type="dataset", revision="v1.1")
    assert not any(f.startswith("scores/") for f in files)


def test_refused_commit_leaves_no_tag_and_says_so(hub):
    repo = _repo("Selective-Fail")
    scored = make_scored(10)
    publish(select_top(scored, ratio=0.5), repo, version="v1.0", card_data={"license": "mit"})
    hub.fail_commits(True)
    with pytest.raises(PublishError) as info:
        publish(select_top(scored, k=2), repo, version="v1.1", card_data={"license": "mit"})
    message = str(info.value)
    assert "v1.1" in message and "committing" in message and "Nothing was committed" in message
    assert "500" in message
    assert hub.token not in message
    hub.fail_commits(False)
    assert set(_tags(repo, hub.token)) == {"v1.0"}
    # A retry after the failure publishes normally.
    publish(select_top(scored, k=2), repo, version="v1.1", card_data={"license": "mit"})
    assert load_dataset(repo, revision="v1.1", split="train").num_rows == 2


def test_refused_tag_leaves_commit_untagged_and_says_so(hub):
    # The commit lands but the tag is refused: the version must not exist, and the error must
    # name the untagged commit and how to retry.
    repo = _repo("Selective-TagFail")
    scored = make_scored(10)
    publish(select_top(scored, ratio=0.5), repo, version="v1.0", card_data={"license": "mit"})
    hub.fail_tags(True)
    with pytest.raises(PublishError) as info:
        publish(select_top(scored, k=2), repo, version="v1.1", card_data={"license": "mit"})
    message = str(info.value)
    head = HfApi(token=hub.token).list_repo_commits(repo, repo_type="dataset")[0].commit_id
    assert f"Commit {head} exists on main without the tag v1.1" in message
    assert "Re-run publish" in message and hub.token not in message
    hub.fail_tags(False)
    assert set(_tags(repo, hub.token)) == {"v1.0"}
    assert load_dataset(repo, revision="v1.0", split="train").num_rows == 5
    publish(select_top(scored, k=2), repo, version="v1.1", card_data={"license": "mit"})
    assert load_dataset(repo, revision="v1.1", split="train").num_rows == 2


def test_stopped_server_leaves_no_tag_and_says_so(hub):
    repo = _repo("Selective-Down")
    scored = make_scored(10)
    publish(select_top(scored, ratio=0.5), repo, version="v1.0", card_data={"license": "mit"})
    hub.stop()
    try:
        with pytest.raises(PublishError) as info:
            publish(select_top(scored, k=2), repo, version="v1.1", card_data={"license": "mit"})
    finally:
        hub.start()
    message = str(info.value)
    assert hub.endpoint in message and "Nothing was committed" in message and "v1.1" in message
    assert hub.token not in message
    assert set(_tags(repo, hub.token)) == {"v1.0"}


def test_branch_private_and_license_from_source_card(hub):
    api = HfApi(token=hub.token)
    source = _repo("source")
    api.create_repo(source, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"---\nlicense: apache-2.0\nlanguage:\n- de\n---\n# src\n",
                    path_in_repo="README.md", repo_id=source, repo_type="dataset")
    repo = _repo("Selective-Branch")
    scored = make_scored(10)
    result = publish(select_top(scored, ratio=0.5), repo, version="v2", scored=scored,
                     source=f"{source}@main", branch="selectit", private=True)
    assert result.branch == "selectit"
    refs = api.list_repo_refs(repo, repo_type="dataset")
    assert {b.name: b.target_commit for b in refs.branches}["selectit"] == result.commit
    assert {t.name: t.target_commit for t in refs.tags} == {"v2": result.commit}
    assert "selectit.json" not in api.list_repo_files(repo, repo_type="dataset", revision="main")
    assert api.repo_info(repo, repo_type="dataset").private is True

    card = _card(repo, "v2")
    assert card.data.license == "apache-2.0" and card.data.language == ["de"]
    assert card.data.source_datasets == [source]
    prov = json.loads(Path(hf_hub_download(repo, "selectit.json", repo_type="dataset", revision="v2")).read_text())
    assert prov["source"]["id"] == source and prov["source"]["revision"] == "main"
    assert load_selective(repo, "v2").num_rows == 5


def test_missing_license_and_bad_version_create_nothing(hub):
    repo = _repo("Selective-NoLicense")
    with pytest.raises(ConfigError, match="license"):
        publish(make_scored(4), repo, version="v1")
    with pytest.raises(ConfigError, match="v1.2.3"):
        publish(make_scored(4), repo, version="v1.0\n", card_data={"license": "mit"})
    assert not HfApi(token=hub.token).repo_exists(repo, repo_type="dataset")


def test_load_selective_errors_list_versions(hub):
    repo = _repo("Selective-Load")
    HfApi(token=hub.token).create_repo(repo, repo_type="dataset")
    with pytest.raises(ConfigError, match="no version tags"):
        load_selective(repo)
    scored = make_scored(10)
    publish(select_top(scored, k=2), repo, version="v1.9", card_data={"license": "mit"})
    publish(select_top(scored, k=4), repo, version="v1.10", card_data={"license": "mit"})
    assert load_selective(repo).num_rows == 4                      # v1.10 sorts after v1.9
    with pytest.raises(ConfigError, match=r"\['v1.9', 'v1.10'\]"):
        load_selective(repo, "v2")


def test_validation_figure_goes_up_and_a_later_version_without_it_drops_it(hub, tmp_path):
    from hf_selectit import validate
    from hf_selectit.validation import attach_validation

    repo = _repo("Selective-Validated")
    scored = make_scored(20).add_column("kind", ["good" if i % 2 else "bad" for i in range(20)])
    report = validate(scored, label="kind", positive="good", columns=["selectit_sentence_score"],
                      tokenizer="none", n_boot=20, plot=str(tmp_path / "figure.png"))
    validated = attach_validation(scored, report)
    publish(select_top(validated, ratio=0.25), repo, version="v1.0", scored=validated,
            card_data={"license": "mit"})
    files = _files_text(repo, "v1.0", hub.token)
    assert files["selectit_validation.png"] == (tmp_path / "figure.png").read_bytes()
    prov = json.loads(files["selectit.json"])
    assert prov["validation"]["plot"] == "selectit_validation.png"
    assert str(tmp_path) not in files["selectit.json"].decode()  # no local path in the provenance
    assert "](selectit_validation.png)" in files["README.md"].decode()

    # The next version has no validation: its commit deletes the figure; v1.0 still has it.
    publish(select_top(scored, ratio=0.25), repo, version="v1.1", scored=scored, card_data={"license": "mit"})
    api = HfApi(token=hub.token)
    assert "selectit_validation.png" not in api.list_repo_files(repo, repo_type="dataset", revision="v1.1")
    assert "selectit_validation.png" in api.list_repo_files(repo, repo_type="dataset", revision="v1.0")
    assert "selectit_validation.png" not in _card(repo, "v1.1").text
