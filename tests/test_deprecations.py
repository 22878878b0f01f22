"""A normal run raises no deprecation warning from transformers, datasets or huggingface_hub.

Both ways those libraries deprecate things are caught: `warnings.warn(FutureWarning or
DeprecationWarning)` (transformers' `deprecate_kwarg`, e.g. `past_key_values` -> `cache` on a
model's forward; one from any other package fails the test too, as a user would see it all the
same) and log records (transformers' `logger.warning_once("... deprecated ...")`, e.g. reading
`output.past_key_values`). The run happens in a fresh process: `warning_once` and
Python's warning registry say a message only once per process, so an earlier test in this
session could otherwise have used it up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent(
    """
    import json, logging, sys, warnings

    model_dir, out_dir = sys.argv[1], sys.argv[2]
    LIBRARIES = ("transformers", "datasets", "huggingface_hub", "accelerate", "evaluate")
    found = []

    class Catch(logging.Handler):
        def emit(self, record):
            text = record.getMessage()
            if "deprecat" in text.lower():
                found.append(f"log {record.name}: {text}")

    # The libraries' own root loggers: transformers' and datasets' do not propagate to the root.
    for name in LIBRARIES:
        logging.getLogger(name).addHandler(Catch(level=logging.DEBUG))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from datasets import Dataset
        from hf_selectit import IFDScorer, SelectITScorer, publish, select_top

        rows = {
            "instruction": ["Name a colour.", "Add 2 and 3.", "Say hello.", "Name a fruit."],
            "input": ["", "", "", ""],
            "output": ["Blue.", "5", "Hello!", "An apple, which is red or green."],
        }
        ds = Dataset.from_dict(rows)
        selectit = SelectITScorer(model_dir, prompts=2)
        ifd = IFDScorer(model_dir)
        ds = ds.map(selectit, batched=True, batch_size=2)
        ds = ds.map(ifd, batched=True, batch_size=2)
        subset = select_top(ds, ratio=0.5)
        publish(subset, out_dir, version="v1.0", scored=ds, card_data={"license": "mit"})

    # Every deprecation, whoever's file it names: transformers' deprecate_kwarg warns with
    # stacklevel=2, which names its caller (torch's Module.__call__), not transformers. A
    # UserWarning about, say, a small model is not what this test is about.
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning)):
            found.append(f"{w.category.__name__} {w.filename}:{w.lineno}: {w.message}")
    print(json.dumps({
        "found": found,
        "prefix_forwards": [selectit.engine.stats.prefix_forwards, ifd.engine.stats.prefix_forwards],
        "kept": subset.num_rows,
    }))
    """
)


def test_scoring_selecting_and_publishing_raise_no_deprecation_warning(tiny_model_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tiny_model_dir), str(tmp_path / "published")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # The cached-prefix path (the forward keyword the cache travels under) really ran, for both
    # read-outs: the rating probabilities and the IFD token losses.
    assert all(n > 0 for n in result["prefix_forwards"]), result
    assert result["kept"] == 2
    assert result["found"] == [], "\n".join(result["found"])
