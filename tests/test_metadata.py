"""Provenance survives the datasets operations the pipeline uses."""

from datasets import Dataset, load_from_disk

from hf_selectit.methods.columns import columns_of
from hf_selectit.provenance import attach as with_metadata
from hf_selectit.provenance import attach_scorer_info, scorer_infos
from hf_selectit.provenance import read as read_metadata


def _ds():
    return Dataset.from_dict({"x": [1, 2, 3]}, info=None)


def test_scorer_infos_accumulate_and_keep_user_description(tmp_path):
    ds = _ds()
    ds.info.description = "User text."
    ds = attach_scorer_info(ds, {"column_prefix": "a_", "parameter_count": 7})
    ds = attach_scorer_info(ds, {"column_prefix": "b_", "parameter_count": 13})
    assert scorer_infos(ds) == {"a_": {"column_prefix": "a_", "parameter_count": 7},
                                "b_": {"column_prefix": "b_", "parameter_count": 13}}
    assert ds.info.description.startswith("User text.")
    assert ds["x"] == [1, 2, 3]


def test_metadata_survives_map_select_and_disk(tmp_path):
    ds = with_metadata(_ds(), selection={"rule": "top_ratio"})
    ds = ds.map(lambda b: {"y": [v * 2 for v in b["x"]]}, batched=True).select([2, 0])
    ds.save_to_disk(tmp_path / "d")
    again = load_from_disk(str(tmp_path / "d"))
    assert read_metadata(again) == {"selection": {"rule": "top_ratio"}}
    assert again["y"] == [6, 2]


def test_no_metadata_is_empty():
    assert read_metadata(_ds()) == {}
    assert scorer_infos(_ds()) == {}


def test_column_prefix_of():
    # The column schema traces a score column to its scorer's prefix (and its status column).
    assert columns_of(None, "selectit_m1_sentence_score").prefix == "selectit_m1_"
    assert columns_of(None, "selectit_sentence_score").status == "selectit_status"
    assert columns_of(None, "score").method is None
