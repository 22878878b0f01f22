"""select_top's method cut-offs: IFD at 1 (Cherry, Superfiltering) and Reflection's pair rule."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset

from hf_selectit import select_top
from hf_selectit.errors import ConfigError
from hf_selectit.select import selection_rule

NAN = math.nan
IFD = [0.5, 1.0, 1.2, NAN, 0.8, 0.9, 2.0, 0.3, 0.7, 0.95]
RIFD = [0.9, 0.5, 0.4, 0.9, 1.1, NAN, 0.2, 0.8, 0.99, 1.0]


def _ds():
    status = ["ok"] * 10
    status[3] = "error: out of memory"
    rstatus = ["ok"] * 10
    rstatus[5] = "error: empty instruction"
    return Dataset.from_dict({"i": list(range(10)), "ifd_score": IFD, "ifd_status": status,
                              "rifd_score": RIFD, "rifd_status": rstatus, "selectit_sentence_score": IFD})


def test_ifd_columns_drop_above_one_by_default_and_count_the_rest():
    out = select_top(_ds(), column="ifd_score", ratio=0.5, order="score")
    # Valid after the cut-off: 0.5, 1.0, 0.8, 0.9, 0.3, 0.7, 0.95 -> int(7 * 0.5) = 3 rows.
    assert out["ifd_score"] == [1.0, 0.95, 0.9]
    rule = selection_rule(out)
    assert rule["cutoff"] == "ifd" and rule["rows_cut"] == 2 and rule["rows_valid"] == 7
    # The same values in a SelectIT column get no cut-off.
    plain = select_top(_ds(), column="selectit_sentence_score", ratio=0.5, order="score")
    assert plain["selectit_sentence_score"][0] == 2.0


def test_superfiltering_drops_one_too_and_none_turns_it_off():
    out = select_top(_ds(), column="ifd_score", ratio=0.5, cutoff="ifd-strict", order="score")
    assert out["ifd_score"] == [0.95, 0.9, 0.8]  # int(6 * 0.5) = 3
    off = select_top(_ds(), column="ifd_score", k=2, cutoff=None, order="score")
    assert off["ifd_score"] == [2.0, 1.2]


def test_reflection_pair_rule():
    out = select_top(_ds(), column="ifd_score", threshold=0.0, cutoff="ifd-strict", also_below_one=["rifd_score"])
    # IFD < 1 and r-IFD < 1, r-IFD error/NaN rows out: rows 0, 7, 8.
    assert out["i"] == [0, 7, 8]
    assert selection_rule(out)["also_below_one"] == ["rifd_score"]


def test_bad_cutoff_options():
    with pytest.raises(ConfigError, match="cutoff"):
        select_top(_ds(), column="ifd_score", cutoff="cherry-ish")
    with pytest.raises(ConfigError, match="also_below_one"):
        select_top(_ds(), column="ifd_score", also_below_one=[3])
