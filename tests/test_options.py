"""hf_selectit.options / config: one definition of every option, checked the same way from Python
keyword arguments, YAML files and command-line flags, before any work starts; errors name the
file and key or the flag, and suggest the closest valid name.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hf_selectit import cli, options
from hf_selectit.config import (
    METHOD_CONFIGS,
    FusionConfig,
    PublishConfig,
    RunOptions,
    ScorerConfig,
    SelectConfig,
)
from hf_selectit.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _run_yaml(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------- Python keyword arguments


@pytest.mark.parametrize("value", ["false", "no", 0, 1, None])
def test_trust_remote_code_must_be_a_real_bool(value):
    with pytest.raises(ConfigError, match=r"trust_remote_code=.* is invalid: expected True or False"):
        ScorerConfig(trust_remote_code=value)
    with pytest.raises(ConfigError, match="reuse_prompt_prefix"):
        ScorerConfig(reuse_prompt_prefix="true")
    with pytest.raises(ConfigError, match="overwrite"):
        PublishConfig(overwrite="yes")


@pytest.mark.parametrize("alpha", [math.inf, -math.inf, math.nan, True, False, -0.1, "0.2"])
def test_alpha_finite_non_negative_number(alpha):
    with pytest.raises(ConfigError, match=r"alpha=.* is invalid: expected a finite number >= 0"):
        ScorerConfig(alpha=alpha)


def test_publish_version_is_normalised_to_its_tag():
    assert PublishConfig(version="1.2").version == "v1.2"


def test_alpha_zero_and_int_are_fine():
    assert ScorerConfig(alpha=0).alpha == 0 and ScorerConfig(alpha=1).alpha == 1


def test_columns_must_be_a_mapping_and_the_message_shows_the_fix():
    with pytest.raises(ConfigError) as err:
        ScorerConfig(columns="q")
    msg = str(err.value)
    assert "columns='q' is invalid" in msg and "{'instruction': 'q'" in msg
    with pytest.raises(ConfigError, match="column names"):
        ScorerConfig(columns={"instruction": 3})
    assert ScorerConfig(columns={"instruction": "q", "response": "a"}).columns["response"] == "a"


def test_device_that_does_not_exist_lists_the_devices_here():
    import torch

    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    bad = ["bogus", f"cuda:{n_cuda}"] + ([] if n_cuda else ["cuda", "cuda:0"])
    for device in bad:
        with pytest.raises(ConfigError) as err:
            ScorerConfig(device=device)
        msg = str(err.value)
        assert f"device={device!r} is invalid" in msg and "Devices here: ['cpu'" in msg
    assert ScorerConfig(device="cpu").device == "cpu"


@pytest.mark.parametrize(
    "cls, kwargs, words",
    [
        (SelectConfig, {"ratio": 2}, "ratio=2 is invalid"),
        (SelectConfig, {"ratio": 0}, "ratio=0 is invalid"),
        (SelectConfig, {"k": 0}, "k=0 is invalid"),
        (SelectConfig, {"threshold": math.nan}, "threshold=nan is invalid"),
        (SelectConfig, {"order": "best"}, "order='best' is invalid"),
        (PublishConfig, {"version": "v 1"}, "version='v 1' is invalid"),
        (PublishConfig, {"version": "v1.0\n"}, "version='v1.0\\n' is invalid"),
        (PublishConfig, {"version": "v\uff11"}, "is invalid"),
        (RunOptions, {"batch_size": True}, "batch_size=True is invalid"),
        (RunOptions, {"keep_checkpoints": "no"}, "keep_checkpoints='no' is invalid"),
        (FusionConfig, {"params": [7e9, -1]}, "params=[7000000000.0, -1] is invalid"),
        (FusionConfig, {"weights": "paper"}, "weights='paper' is invalid"),
        (ScorerConfig, {"prompts": 0}, "prompts=0 is invalid"),
        (ScorerConfig, {"prompts": True}, "prompts=True is invalid"),
    ],
)
def test_dataclasses_check_their_values(cls, kwargs, words):
    with pytest.raises(ConfigError) as err:
        cls(**kwargs)
    assert words in str(err.value)


# ------------------------------------------------------------------------- YAML files


@pytest.mark.parametrize(
    "section, words",
    [
        ("select: {ratio: 2}", "run.yaml: select.ratio=2 is invalid"),
        ('publish: {repo_id: ./out, version: "v 1"}\nselect: {ratio: 0.2}', "run.yaml: publish.version='v 1' is invalid"),
        ("scorer: {alpha: -1}", "run.yaml: scorer.alpha=-1 is invalid"),
        ("models: [{model: m, alpha: .inf}]", "run.yaml: models[0].alpha=inf is invalid"),
        ('scorer: {trust_remote_code: "false"}', "run.yaml: scorer.trust_remote_code='false' is invalid"),
        ("scorer: {columns: q}", "run.yaml: scorer.columns='q' is invalid"),
        ("fusion: {params: [1, 0]}", "run.yaml: fusion.params="),
        ("batch_size: 0", "run.yaml: batch_size=0 is invalid"),
        ("models: [{model: m, params: -7}]", "run.yaml: models[0].params=-7.0 is invalid"),
        ("select: {ratio: 0.2}\npublish: {repo_id: me/bad name}", "run.yaml: publish.repo_id='me/bad name' is invalid"),
    ],
)
def test_run_config_bad_value_names_file_and_key(tmp_path, section, words):
    path = _run_yaml(tmp_path, f"input: data.jsonl\n{section}\n")
    with pytest.raises(ConfigError) as err:
        options.load_run_config(path)
    assert words in str(err.value).replace(str(tmp_path) + "/", "")
    assert "command line" not in str(err.value)


def test_typo_in_shared_scorer_section_is_named_there(tmp_path):
    path = _run_yaml(tmp_path, "input: d.jsonl\nscorer: {alpah: 0.3}\nmodels: [{model: a}, {model: b}]\n")
    with pytest.raises(ConfigError) as err:
        options.load_run_config(path)
    msg = str(err.value)
    assert "scorer.alpah" in msg and "Did you mean 'alpha'?" in msg and "models[0]" not in msg


def test_typo_in_a_model_entry_and_unknown_method(tmp_path):
    path = _run_yaml(tmp_path, "input: d.jsonl\nmodels: [{modle: a}]\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.modle.*Did you mean 'model'"):
        options.load_run_config(path)
    path = _run_yaml(tmp_path, "input: d.jsonl\nmodels: [{method: selectti}]\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.method='selectti' is invalid.*Did you mean 'selectit'"):
        options.load_run_config(path)


def test_every_section_is_checked_before_anything_loads(tmp_path):
    # The model does not exist and the input is a Hub id: neither is touched, the bad select
    # value is reported first.
    path = _run_yaml(tmp_path, "input: nobody/nothing\nmodels: [{model: nobody/no-model}]\n"
                               "select: {ratio: 2}\npublish: {repo_id: ./out}\n")
    with pytest.raises(ConfigError, match="select.ratio=2"):
        options.load_run_config(path)


def test_relative_input_resolves_against_the_yaml_folder(tmp_path, monkeypatch):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "data.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (folder / "model").mkdir()
    path = _run_yaml(folder, "input: data.jsonl\nmodels: [{model: ./model}, {model: org/hub-model}]\n"
                             "output: scored\n")
    monkeypatch.chdir(tmp_path)
    cfg = options.load_run_config(path)
    assert cfg.io.input == str(folder / "data.jsonl")
    assert cfg.models[0].model == str(folder / "model")
    assert cfg.models[1].model == "org/hub-model"  # a Hub id is left alone
    assert cfg.io.output == "scored"  # outputs are relative to where you run it
    hub = _run_yaml(folder, "input: vicgalle/alpaca-gpt4\n", "hub.yaml")
    assert options.load_run_config(hub).io.input == "vicgalle/alpaca-gpt4"


def test_method_dispatch_is_generic(tmp_path, monkeypatch):
    @dataclass
    class EchoConfig:
        model: str = field(default="m", metadata={"help": "x"})
        column_prefix: str = field(default="echo_", metadata={"help": "x"})
        width: int = field(default=1, metadata={"help": "x"})

    monkeypatch.setitem(METHOD_CONFIGS, "echo", EchoConfig)
    path = _run_yaml(tmp_path, "input: d.jsonl\nmodels: [{method: echo, width: 3}, {model: z}]\n")
    cfg = options.load_run_config(path)
    assert isinstance(cfg.models[0], EchoConfig) and cfg.models[0].width == 3
    assert isinstance(cfg.models[1], ScorerConfig)
    # `score --method echo` offers the method's own options.
    assert cli.parse_command(["score", "d.jsonl", "--method", "echo", "--width", "4"]).scorer.width == 4


def test_shipped_examples_load_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("demo", "selective_alpaca"):
        assert name in cli.example_names()
        cfg = options.load_run_config(cli.example_path(name))
        assert cfg.select is not None
    demo = options.load_run_config(cli.example_path("demo"))
    assert Path(demo.io.input).is_file()


# ---------------------------------------------------------------------- command line


def _main(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_flag_value_errors_name_the_flag(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b", "selectit_sentence_score": 1.0}\n')
    code, _, err = _main(["select", str(data), "--ratio", "2", "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and "--ratio=2.0 is invalid" in err and "Traceback" not in err


def test_config_file_values_are_named_by_file_not_command_line(tmp_path, capsys):
    cfg = tmp_path / "opts.yaml"
    cfg.write_text("ratio: 2\n")
    code, _, err = _main(["select", "x.jsonl", "--config", str(cfg), "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and f"{cfg}: ratio=2 is invalid" in err and "command line" not in err


def test_unknown_flag_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["score", "x.jsonl", "--alpah", "0.3"])
    assert exit_.value.code == 2
    assert "did you mean --alpha?" in capsys.readouterr().err


def test_flag_bools_are_real_bools(tmp_path):
    scorer = cli.parse_command(["score", "x", "--trust-remote-code", "--no-reuse-prompt-prefix"]).scorer
    assert scorer.trust_remote_code is True and scorer.reuse_prompt_prefix is False


@pytest.mark.parametrize(
    "make, argv_tail, words",
    [
        (None, ["nonexistent.jsonl"], "No such file or Hub dataset: 'nonexistent.jsonl'"),
        ("broken", [], "line 2 is not valid JSON"),
        ("empty", [], "has no rows"),
        ("header", [], "has no rows (only a header line)"),
    ],
)
def test_bad_inputs_exit_2_in_file_terms(tmp_path, capsys, monkeypatch, make, argv_tail, words):
    monkeypatch.chdir(tmp_path)
    if make == "broken":
        (tmp_path / "b.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
        argv_tail = [str(tmp_path / "b.jsonl")]
    elif make == "empty":
        (tmp_path / "e.jsonl").write_text("")
        argv_tail = [str(tmp_path / "e.jsonl")]
    elif make == "header":
        (tmp_path / "h.csv").write_text("instruction,output\n")
        argv_tail = [str(tmp_path / "h.csv")]
    code, _, err = _main(["score", *argv_tail, "--output", str(tmp_path / "o")], capsys)
    assert code == 2, err
    assert words in err and "Traceback" not in err
    if make == "broken":
        assert "b.jsonl" in err


def test_publish_bad_repo_id_is_a_clear_message(tmp_path, capsys):
    code, _, err = _main(["publish", "x.jsonl", "--repo-id", "me/bad name"], capsys)
    assert code == 2 and "--repo-id='me/bad name' is invalid" in err
    assert "HFValidationError" not in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, _, err = _main(["--debug", "score", "nonexistent.jsonl", "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and "Traceback" in err and "No such file or Hub dataset" in err


def test_messages_use_cli_terms_not_python_syntax():
    assert cli.cli_terms("Pass overwrite=True to replace it") == "Pass --overwrite to replace it"
    assert "--license cc-by-4.0" in cli.cli_terms("e.g. card_data={'license': 'cc-by-4.0'} (or ...)")
    assert cli.cli_terms("No source dataset was given (source=...)") == "No source dataset was given (--source ...)"
    assert cli.cli_terms("run.yaml: select.ratio=2 is invalid") == "run.yaml: select.ratio=2 is invalid"
    assert cli.cli_terms("--ratio=2.0 is invalid") == "--ratio=2.0 is invalid"


def test_verbose_raises_only_this_packages_loggers(tmp_path, capsys):
    code, _, _ = _main(["-vv", "select", "missing.jsonl", "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert logging.getLogger("hf_selectit").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("matplotlib.font_manager").getEffectiveLevel() >= logging.WARNING
    code, _, _ = _main(["select", "missing.jsonl", "--output", str(tmp_path / "o")], capsys)
    assert logging.getLogger("hf_selectit").getEffectiveLevel() == logging.WARNING


def test_run_example_print_and_help_lists_examples(capsys):
    code, out, _ = _main(["run", "--example", "demo", "--print"], capsys)
    assert code == 0 and "input: ../data/demo.jsonl" in out
    code, _, err = _main(["run", "--example", "dmeo"], capsys)
    assert code == 2 and "Did you mean 'demo'?" in err


# ------------------------------------------------------------------ scorer constructors


@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_scorer_signature_lists_every_config_field_with_its_default(method):
    import inspect
    from dataclasses import MISSING, fields

    from hf_selectit.methods import scorer_class

    cls = scorer_class(method)
    params = inspect.signature(cls).parameters
    assert list(params)[:2] == ["model", "tokenizer"]
    for f in fields(cls.config_class):
        default = f.default_factory() if f.default is MISSING else f.default
        assert params[f.name].default == default, f.name
        assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY or f.name == "model"
    assert "alpha" in str(inspect.signature(scorer_class("selectit")))


def test_unknown_scorer_option_suggests_the_closest():
    from hf_selectit import SelectITScorer

    with pytest.raises(ConfigError, match=r"unknown option 'alpah'\. Did you mean 'alpha'\?"):
        SelectITScorer(alpah=0.3)


def test_shared_model_options_are_declared_once():
    from dataclasses import fields

    from hf_selectit.config import ModelConfig

    shared = [f.name for f in fields(ModelConfig)]
    for cls in METHOD_CONFIGS.values():
        assert issubclass(cls, ModelConfig)
        assert [f.name for f in fields(cls)][:len(shared)] == shared


def test_ifd_model_path_resolves_against_the_yaml_folder(tmp_path, monkeypatch):
    # Defect: IFD's config re-declared `model` without the read-path mark, so a run YAML's
    # `./model` for an IFD/r-IFD model was read from the working directory.
    folder = tmp_path / "job"
    (folder / "student").mkdir(parents=True)
    path = _run_yaml(folder, "input: d.jsonl\nmodels: [{method: ifd, model: ./student}, "
                             "{method: rifd, model: ./student}]\n")
    monkeypatch.chdir(tmp_path)
    cfg = options.load_run_config(path)
    assert [m.model for m in cfg.models] == [str(folder / "student")] * 2


# ------------------------------------------------------------- defects of the old loader


def test_config_file_method_is_honoured(tmp_path):
    # Defect: `method:` in a --config file was refused ("give it as --method") instead of used.
    cfg = _run_yaml(tmp_path, "method: ifd\npreset: cherry\nmax_length: 512\n", "opts.yaml")
    from hf_selectit.config import IFDConfig

    scorer = cli.parse_command(["score", "d.jsonl", "--config", str(cfg)]).scorer
    assert isinstance(scorer, IFDConfig) and scorer.preset == "cherry" and scorer.max_length == 512
    # A flag still wins over the file.
    assert isinstance(cli.parse_command(["score", "d.jsonl", "--config", str(cfg), "--method", "ifd",
                                         "--max-length", "256"]).scorer, IFDConfig)


def test_yaml_numbers_without_a_dot_read_as_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads `2e-1` and `7e9` as strings; a number option takes them as numbers.
    cfg = _run_yaml(tmp_path, "alpha: 2e-1\nray_gpus: 5e-1\n", "opts.yaml")
    args = cli.parse_command(["score", "d.jsonl", "--config", str(cfg)])
    assert args.scorer.alpha == 0.2 and args.ray.num_gpus == 0.5
    run = options.load_run_config(_run_yaml(tmp_path, "input: d.jsonl\nscorer: {alpha: 2e-1}\n"
                                                      "models: [{model: a, params: 7e9}]\n"))
    assert run.models[0].alpha == 0.2 and run.model_params == [7e9]


def test_score_columns_flag_takes_a_yaml_list():
    # Defect: `--score-columns '[a, b]'` was split at the comma into '[a' and 'b]'.
    for text in ("[a, b]", '["a", "b"]', "a,b"):
        assert cli.parse_command(["validate", "d.jsonl", "--score-columns", text]).validate.score_columns == ["a", "b"]


def test_positive_flag_reads_text_as_every_list_option_does():
    # Defect: --positive read JSON only, so the YAML list '[good, great]' that --score-columns
    # accepts was refused; both now go through config.from_text.
    for text, expected in (("[good, great]", ["good", "great"]), ('["good", "great"]', ["good", "great"]),
                           ('{"good": 1, "bad": 0}', {"good": 1, "bad": 0}), ("good", "good")):
        parsed = cli.parse_command(["validate", "d.jsonl", "--label", "kind", "--positive", text])
        assert parsed.validate.positive == expected
    with pytest.raises(ConfigError, match=r"--positive='\[good' is invalid: expected valid JSON/YAML"):
        cli.parse_command(["validate", "d.jsonl", "--label", "kind", "--positive", "[good"])


def test_int_options_refuse_fractions_and_flags_refuse_values(tmp_path, capsys):
    code, _, err = _main(["score", "d.jsonl", "--output", str(tmp_path / "o"), "--batch-size", "4.0"], capsys)
    assert code == 2 and "--batch-size='4.0' is invalid: expected an integer" in err
    with pytest.raises(ConfigError, match=r"run.yaml: batch_size=4.0 is invalid"):
        options.load_run_config(_run_yaml(tmp_path, "input: d.jsonl\nbatch_size: 4.0\n"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["score", "d.jsonl", "--trust-remote-code", "yes"])
    assert exit_.value.code == 2 and "unrecognized arguments: yes" in capsys.readouterr().err
    assert __import__("hf_selectit.config").config.ValidateConfig(score_columns="[a, b]").score_columns == ["a", "b"]


def test_selectit_column_prefix_rule_is_the_fields_own():
    # Its one rule is the field's (non-empty); a second check in __post_init__ said "or None",
    # which it refuses too.
    for value in ("", None):
        with pytest.raises(ConfigError, match=r"column_prefix=.* is invalid: expected a non-empty string\.$"):
            ScorerConfig(column_prefix=value)
