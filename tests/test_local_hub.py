"""The local Hub (tests/local_hub.py) answers the real huggingface_hub / datasets clients like the Hub.

No HfApi method is mocked: every call goes over HTTP to the server on 127.0.0.1.
"""

from __future__ import annotations

import io
import os
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.hub


def _parquet_bytes(rows: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(rows), buf)
    return buf.getvalue()


@pytest.fixture
def api(local_hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=local_hub.endpoint, token=local_hub.token)


@pytest.fixture
def repo_id(api):
    """A fresh dataset repo for one test."""
    rid = f"tester/ds-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid, repo_type="dataset")
    return rid


def _add(path: str, data: bytes):
    from huggingface_hub import CommitOperationAdd

    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)


def test_endpoint_and_whoami(local_hub):
    import huggingface_hub
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    assert local_hub.endpoint == os.environ["HF_ENDPOINT"]
    assert HfApi(token=local_hub.token).whoami()["name"] == "tester"
    rejected: tuple = (HfHubHTTPError,)
    if huggingface_hub.__version__.startswith("0."):
        import requests  # huggingface_hub < 1.0 re-raises a rejected whoami as requests' HTTPError

        rejected += (requests.HTTPError,)
    with pytest.raises(rejected):
        HfApi(token="hf_wrong").whoami()


def test_create_repo_conflict_exist_ok_and_delete(api, local_hub):
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    rid = f"tester/create-{uuid.uuid4().hex[:8]}"
    url = api.create_repo(rid, repo_type="dataset")
    assert url.repo_id == rid and url.repo_type == "dataset"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(rid, repo_type="dataset")
    assert err.value.response.status_code == 409
    assert api.create_repo(rid, repo_type="dataset", exist_ok=True).repo_id == rid
    info = api.repo_info(rid, repo_type="dataset")
    assert info.id == rid and info.private is False
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]  # the Hub's initial commit
    assert (local_hub.repos_dir / "datasets" / "tester" / rid.split("/")[1]).is_dir()
    api.delete_repo(rid, repo_type="dataset")
    assert not api.repo_exists(rid, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(rid, repo_type="dataset")


def test_writes_need_the_token(local_hub):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_not_the_right_one").create_repo("tester/nope", repo_type="dataset")
    assert err.value.response.status_code == 401


def test_private_repo_is_hidden_without_token(api, local_hub):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    rid = f"tester/private-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid, repo_type="dataset", private=True)
    assert api.repo_info(rid, repo_type="dataset").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).repo_info(rid, repo_type="dataset")


def test_commit_regular_and_lfs_files(api, repo_id, local_hub):
    parquet = _parquet_bytes({"x": list(range(100))})
    info = api.create_commit(
        repo_id, repo_type="dataset", commit_message="add files",
        operations=[_add("notes.txt", b"hello\n"), _add("data/train.parquet", parquet)],
    )
    assert info.oid and len(info.oid) == 40
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == [
        ".gitattributes", "data/train.parquet", "notes.txt",
    ]
    by_path = {p.path: p for p in api.get_paths_info(repo_id, ["notes.txt", "data/train.parquet"], repo_type="dataset")}
    assert by_path["notes.txt"].lfs is None and by_path["notes.txt"].size == 6
    lfs = by_path["data/train.parquet"].lfs
    assert lfs is not None and lfs.size == len(parquet)
    # In git the parquet file is an LFS pointer; the bytes live in the repo's LFS store.
    bare = local_hub.repos_dir / "datasets" / repo_id
    pointer = subprocess.run(["git", "--git-dir", str(bare), "show", f"{info.oid}:data/train.parquet"],
                             capture_output=True, check=True).stdout
    assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\noid sha256:")
    assert [c.title for c in api.list_repo_commits(repo_id, repo_type="dataset")] == ["add files", "initial commit"]
    assert api.file_exists(repo_id, "notes.txt", repo_type="dataset")
    assert not api.file_exists(repo_id, "missing.txt", repo_type="dataset")


def test_big_text_file_goes_through_lfs_and_downloads(api, repo_id, tmp_path):
    from huggingface_hub import hf_hub_download

    big = (b"0123456789abcdef" * 65536) * 11  # 11 MiB of text: above the 10 MB LFS threshold
    api.create_commit(repo_id, repo_type="dataset", commit_message="big", operations=[_add("big.txt", big)])
    [info] = api.get_paths_info(repo_id, ["big.txt"], repo_type="dataset")
    assert info.lfs is not None and info.size == len(big)
    path = hf_hub_download(repo_id, "big.txt", repo_type="dataset", cache_dir=tmp_path)
    assert open(path, "rb").read() == big


def test_tags_branches_and_download_at_tag(api, repo_id, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError

    first = api.create_commit(repo_id, repo_type="dataset", commit_message="one", operations=[_add("f.txt", b"one")])
    api.create_tag(repo_id, repo_type="dataset", tag="v1.0", tag_message="first")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(repo_id, repo_type="dataset", tag="v1.0")
    assert err.value.response.status_code == 409
    api.create_commit(repo_id, repo_type="dataset", commit_message="two", operations=[_add("f.txt", b"two")])
    api.create_branch(repo_id, repo_type="dataset", branch="dev", revision="v1.0")

    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0": first.oid}
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert {b.name: b.target_commit for b in refs.branches}["dev"] == first.oid

    at_tag = hf_hub_download(repo_id, "f.txt", repo_type="dataset", revision="v1.0", cache_dir=tmp_path)
    at_main = hf_hub_download(repo_id, "f.txt", repo_type="dataset", cache_dir=tmp_path)
    assert open(at_tag, "rb").read() == b"one" and open(at_main, "rb").read() == b"two"
    assert api.repo_info(repo_id, repo_type="dataset", revision="v1.0").sha == first.oid

    api.create_commit(repo_id, repo_type="dataset", commit_message="on dev", revision="dev",
                      operations=[_add("dev.txt", b"d")])
    assert "dev.txt" in api.list_repo_files(repo_id, repo_type="dataset", revision="dev")
    assert "dev.txt" not in api.list_repo_files(repo_id, repo_type="dataset")

    api.delete_tag(repo_id, repo_type="dataset", tag="v1.0")
    api.delete_branch(repo_id, repo_type="dataset", branch="dev")
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    assert refs.tags == [] and [b.name for b in refs.branches] == ["main"]
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo_id, repo_type="dataset", revision="v1.0")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "nope.txt", repo_type="dataset", cache_dir=tmp_path)


def test_delete_file_and_folder(api, repo_id):
    from huggingface_hub import CommitOperationDelete

    api.create_commit(repo_id, repo_type="dataset", commit_message="add", operations=[
        _add("a.txt", b"a"), _add("data/x.parquet", _parquet_bytes({"x": [1]})), _add("data/y.txt", b"y"),
    ])
    api.create_commit(repo_id, repo_type="dataset", commit_message="delete", operations=[
        CommitOperationDelete("a.txt"), CommitOperationDelete("data/"),
    ])
    assert api.list_repo_files(repo_id, repo_type="dataset") == [".gitattributes"]


def test_stale_parent_commit_is_refused(api, repo_id):
    from huggingface_hub.errors import HfHubHTTPError

    base = api.repo_info(repo_id, repo_type="dataset").sha
    api.create_commit(repo_id, repo_type="dataset", commit_message="a", operations=[_add("a.txt", b"a")],
                      parent_commit=base)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, repo_type="dataset", commit_message="b", operations=[_add("b.txt", b"b")],
                          parent_commit=base)
    assert err.value.response.status_code == 412
    assert "b.txt" not in api.list_repo_files(repo_id, repo_type="dataset")


def test_range_requests_through_hffilesystem(api, repo_id):
    from huggingface_hub import HfFileSystem

    payload = bytes(range(256)) * 40
    api.create_commit(repo_id, repo_type="dataset", commit_message="bin", operations=[_add("blob.bin", payload)])
    fs = HfFileSystem(endpoint=api.endpoint, token=api.token)
    with fs.open(f"datasets/{repo_id}/blob.bin", "rb", block_size=1000) as fh:
        fh.seek(5000)
        assert fh.read(300) == payload[5000:5300]
    assert fs.ls(f"datasets/{repo_id}", detail=False) == [f"datasets/{repo_id}/.gitattributes",
                                                          f"datasets/{repo_id}/blob.bin"]


def test_push_to_hub_and_load_dataset_at_two_tags(api, repo_id):
    import datasets

    datasets.Dataset.from_dict({"text": ["a", "b", "c"], "n": [1, 2, 3]}).push_to_hub(repo_id, token=api.token)
    api.create_tag(repo_id, repo_type="dataset", tag="v1.0")
    # The second push replaces the shard under data/ and the split sizes in README.md.
    datasets.Dataset.from_dict({"text": ["z"], "n": [26]}).push_to_hub(repo_id, token=api.token)
    api.create_tag(repo_id, repo_type="dataset", tag="v1.1")

    v10 = datasets.load_dataset(repo_id, revision="v1.0", split="train")
    v11 = datasets.load_dataset(repo_id, revision="v1.1", split="train")
    assert v10.to_dict() == {"text": ["a", "b", "c"], "n": [1, 2, 3]}
    assert v11.to_dict() == {"text": ["z"], "n": [26]}


def test_fail_commits_makes_create_commit_raise(api, repo_id, local_hub):
    from huggingface_hub.errors import HfHubHTTPError

    before = api.repo_info(repo_id, repo_type="dataset").sha
    local_hub.fail_commits(True)
    try:
        with pytest.raises(HfHubHTTPError) as err:
            api.create_commit(repo_id, repo_type="dataset", commit_message="x", operations=[_add("x.txt", b"x")])
        assert err.value.response.status_code == 500
    finally:
        local_hub.fail_commits(False)
    assert api.repo_info(repo_id, repo_type="dataset").sha == before
    api.create_commit(repo_id, repo_type="dataset", commit_message="x", operations=[_add("x.txt", b"x")])
    assert "x.txt" in api.list_repo_files(repo_id, repo_type="dataset")


def test_stop_and_start(api, repo_id, local_hub):
    import urllib.error
    import urllib.request

    api.create_commit(repo_id, repo_type="dataset", commit_message="keep", operations=[_add("k.txt", b"k")])
    local_hub.stop()
    try:
        assert not local_hub.running
        with pytest.raises(urllib.error.URLError):  # connection refused (the stdlib: any client version)
            urllib.request.urlopen(f"{local_hub.endpoint}/api/datasets/{repo_id}/refs", timeout=5)
    finally:
        local_hub.start()
    assert local_hub.running
    assert "k.txt" in api.list_repo_files(repo_id, repo_type="dataset")


def test_push_to_hub_on_a_branch_with_a_slash(api, repo_id):
    import datasets

    datasets.Dataset.from_dict({"n": [1, 2]}).push_to_hub(repo_id, revision="selectit/dev", token=api.token)
    assert "selectit/dev" in {b.name for b in api.list_repo_refs(repo_id, repo_type="dataset").branches}
    assert not any(f.startswith("data/") for f in api.list_repo_files(repo_id, repo_type="dataset"))
    assert datasets.load_dataset(repo_id, revision="selectit/dev", split="train")["n"] == [1, 2]


def test_tree_expand_at_a_tag_names_the_last_commit(api, repo_id):
    from huggingface_hub import CommitOperationDelete

    added = api.create_commit(repo_id, repo_type="dataset", commit_message="add old.txt",
                              operations=[_add("old.txt", b"old")])
    api.create_tag(repo_id, repo_type="dataset", tag="v1")
    api.create_commit(repo_id, repo_type="dataset", commit_message="rm", operations=[CommitOperationDelete("old.txt")])
    entries = {e.path: e for e in api.list_repo_tree(repo_id, repo_type="dataset", revision="v1", expand=True)}
    assert entries["old.txt"].last_commit.oid == added.oid
    assert entries["old.txt"].last_commit.title == "add old.txt"


def test_card_with_two_configs_loads_each_config(api, repo_id):
    import datasets
    from huggingface_hub import DatasetCard

    card = (
        "---\nlicense: mit\nconfigs:\n"
        "- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n"
        "- config_name: scores\n  data_files:\n  - split: train\n    path: scores/train-*.parquet\n"
        "---\n# Selective subset\n"
    )
    api.create_commit(repo_id, repo_type="dataset", commit_message="v1.0", operations=[
        _add("README.md", card.encode()),
        _add("data/train-00000-of-00001.parquet", _parquet_bytes({"x": [1]})),
        _add("scores/train-00000-of-00001.parquet", _parquet_bytes({"x": [1, 2, 3]})),
    ])
    api.create_tag(repo_id, repo_type="dataset", tag="v1.0")
    loaded = DatasetCard.load(repo_id, repo_type="dataset")
    assert [c["config_name"] for c in loaded.data.configs] == ["default", "scores"]
    assert datasets.load_dataset(repo_id, revision="v1.0", split="train")["x"] == [1]
    assert datasets.load_dataset(repo_id, "scores", revision="v1.0", split="train")["x"] == [1, 2, 3]


def test_invalid_card_yaml_is_refused(api, repo_id):
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.create_commit(repo_id, repo_type="dataset", commit_message="bad card",
                          operations=[_add("README.md", b"---\nlicense: [mit\n---\n")])


def test_fail_tags_refuses_tags_but_not_commits(api, repo_id, local_hub):
    from huggingface_hub.errors import HfHubHTTPError

    local_hub.fail_tags(True)
    try:
        api.create_commit(repo_id, repo_type="dataset", commit_message="x", operations=[_add("x.txt", b"x")])
        with pytest.raises(HfHubHTTPError) as err:
            api.create_tag(repo_id, repo_type="dataset", tag="v9")
        assert err.value.response.status_code == 500
    finally:
        local_hub.fail_tags(False)
    assert api.list_repo_refs(repo_id, repo_type="dataset").tags == []
    api.create_tag(repo_id, repo_type="dataset", tag="v9")
    assert [t.name for t in api.list_repo_refs(repo_id, repo_type="dataset").tags] == ["v9"]
