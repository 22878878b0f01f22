"""The `hf-selectit` command: score | select | publish | run | demo.

Every option is generated from the config dataclasses the Python API uses (ScorerConfig,
SelectConfig, PublishConfig from `hf_selectit.config`; IOConfig from `hf_selectit.io`; RunOptions
from `hf_selectit.pipeline`): the flag is the field name with `-` for `_`, the help is the
field's metadata, the type comes from the annotation. `--config FILE.yaml` supplies any option
(same names); flags given on the command line win over the file.

Nothing heavy is imported at module level, so `hf-selectit --help` answers in well under a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import PublishConfig, ScorerConfig, SelectConfig, ValidateConfig
from .errors import ConfigError, SchemaError, ScoreColumnError, SelectITError
from .io import IOConfig
from .pipeline import (
    PipelineConfig,
    RunOptions,
    RunSummary,
    coerce_value,
    check_keys,
    config_from_mapping,
    field_default,
    load_pipeline_config,
    load_yaml,
)

logger = logging.getLogger(__name__)

# A field whose flag differs from its name: the dataset's --revision is IOConfig.revision, so the
# model's revision is spelled --model-revision on the command line and in flat YAML files.
RENAMED = {(ScorerConfig, "revision"): "model_revision"}

DEMO_OUTPUT = "./selective-demo"
DEMO_SHARD_ROWS = 10


# ------------------------------------------------------------------ option generation


def option_name(cls: type, name: str) -> str:
    """The command-line / flat-YAML name of a dataclass field."""
    return RENAMED.get((cls, name), name)


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, *, title: str,
                          exclude: Sequence[str] = ()) -> list[str]:
    """Add one option per field of ``cls`` to ``parser`` (in an argument group).

    Values are parsed later by :func:`hf_selectit.pipeline.coerce_value` against the field's
    annotation, so the command line and YAML files share one set of rules. Options left out of
    the command line do not appear in the namespace at all (``argparse.SUPPRESS``), which is what
    lets YAML values show through.

    Args:
        parser: the (sub)parser.
        cls: a config dataclass.
        title: the group's title in ``--help``.
        exclude: field names not to offer.

    Returns:
        The option names (dests) added.
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title)
    names = []
    for f in fields(cls):
        if f.name in exclude:
            continue
        dest = option_name(cls, f.name)
        flag = "--" + dest.replace("_", "-")
        default = field_default(f)
        help_text = f.metadata.get("help", "")
        shown = json.dumps(default) if isinstance(default, (dict, list)) else default
        help_text = f"{help_text} (default: {str(shown).replace('%', '%%')})"
        annotation = hints[f.name]
        if annotation is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, dest=dest, default=argparse.SUPPRESS,
                               metavar=_metavar(annotation), help=help_text)
        names.append(dest)
    return names


def _metavar(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kinds = {int: "INT", float: "FLOAT", str: "TEXT", list: "JSON_LIST", dict: "JSON_DICT"}
    return "|".join(kinds.get(typing.get_origin(a) or a, "VALUE") for a in args)


def build_config(cls: type, args: argparse.Namespace, file_values: dict, *, exclude: Sequence[str] = (),
                 where: str = "command line", extra: Optional[dict] = None) -> Any:
    """One config dataclass from YAML values overlaid with the command line's flags."""
    values: dict = {}
    cli_values: dict = {}
    for f in fields(cls):
        if f.name in exclude:
            continue
        dest = option_name(cls, f.name)
        if dest in file_values:
            values[f.name] = file_values[dest]
        if hasattr(args, dest):
            cli_values[f.name] = getattr(args, dest)
    values.update(extra or {})
    hints = typing.get_type_hints(cls)
    for name, raw in cli_values.items():
        values[name] = coerce_value("--" + option_name(cls, name).replace("_", "-"), raw,
                                    hints[name], from_cli=True)
    return config_from_mapping(cls, values, where=where)


def read_config_file(path: Optional[str], valid: Sequence[str]) -> dict:
    """The flat option mapping of a ``--config`` YAML file, checked against the valid names."""
    if not path:
        return {}
    data = {str(k).replace("-", "_"): v for k, v in load_yaml(path).items()}
    check_keys(data, valid, where=str(path))
    return data


# ------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``hf-selectit`` parser with its five subcommands."""
    parser = argparse.ArgumentParser(
        prog="hf-selectit",
        description="SelectIT instruction-data selection for Hugging Face datasets: score rows "
                    "with an LLM's own rating probabilities, keep the best, publish the subset.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="More logging (-vv: debug).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("score", help="Add selectit_* score columns to a dataset.",
                       description="Score every row with one model; write the scored dataset.")
    _input_args(p)
    add_dataclass_options(p, IOConfig, title="input/output", exclude=("input",))
    add_dataclass_options(p, ScorerConfig, title="scorer")
    add_dataclass_options(p, RunOptions, title="execution", exclude=("subset_output",))
    p.add_argument("--distributed", action="store_true",
                   help="Kept for compatibility: under a torchrun / accelerate launch every "
                        "process scores its share of the shards and rank 0 writes the output, "
                        "with or without this flag.")
    p.set_defaults(handler=cmd_score, sections=(IOConfig, ScorerConfig, RunOptions))

    p = sub.add_parser("select", help="Keep the top rows of a scored dataset.",
                       description="Select a subset of scored rows (docs/method.md section 5).")
    _input_args(p)
    add_dataclass_options(p, IOConfig, title="input/output", exclude=("input",))
    add_dataclass_options(p, SelectConfig, title="selection")
    p.add_argument("--report", metavar="FILE.md", help="Also write the selection report (Markdown).")
    p.set_defaults(handler=cmd_select, sections=(IOConfig, SelectConfig))

    p = sub.add_parser("publish", help="Publish a selected subset to the Hub or a local folder.",
                       description="Push a subset with a generated card and a version tag.")
    _input_args(p)
    add_dataclass_options(p, IOConfig, title="input", exclude=("input", "output", "output_format"))
    add_dataclass_options(p, PublishConfig, title="publish")
    p.add_argument("--scored", metavar="PATH",
                   help="The full scored dataset the subset was selected from (for the card's statistics).")
    p.set_defaults(handler=cmd_publish, sections=(IOConfig, PublishConfig))

    p = sub.add_parser("validate", help="Check scores against labels or preference pairs, beside baselines.",
                       description="How well a score separates good answers from bad ones, each "
                                   "figure with a bootstrap 95% interval and its number of items, "
                                   "beside the baselines (random, response length in characters and "
                                   "tokens, other score columns). With --label: ROC-AUC of each score "
                                   "column for a binary/categorical label (--positive), Spearman for a "
                                   "numeric rating (rows without scores are scored first). Without: "
                                   "preference pairs (prompt/chosen/rejected, ShareGPT conversations + "
                                   "chosen/rejected, or messages-style chosen/rejected lists), both "
                                   "answers scored with the scorer options, pairwise accuracy (ties "
                                   "0.5). Prints a Markdown table; --json FILE the full report, "
                                   "--plot FILE.png the score distributions.")
    _input_args(p)
    add_dataclass_options(p, IOConfig, title="input", exclude=("input", "output", "output_format"))
    add_dataclass_options(p, ValidateConfig, title="validation")
    add_dataclass_options(p, ScorerConfig, title="scorer (preference pairs, or rows without scores)")
    p.set_defaults(handler=cmd_validate, sections=(IOConfig, ValidateConfig, ScorerConfig))

    p = sub.add_parser("run", help="score -> fuse -> select -> publish from one YAML file.",
                       description="Run a whole selection job described by a YAML file "
                                   "(see configs/selective_alpaca.yaml). Restarting a killed run "
                                   "skips the shards it already scored.")
    p.add_argument("run_config", metavar="CONFIG.yaml", help="The job's YAML file.")
    add_dataclass_options(p, IOConfig, title="input/output overrides")
    add_dataclass_options(p, RunOptions, title="execution overrides")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("demo", help="Score the bundled demo set with the embedded SmolLM2 and "
                                    "publish the top 20%% to ./selective-demo.",
                       description="The package's first command: about 60 hand-written "
                                   "instruction/response pairs (good, wrong, off-topic, truncated, "
                                   "refusing), scored by the embedded SmolLM2-135M-Instruct; the "
                                   "top 20%% is written to ./selective-demo with its card.")
    p.add_argument("--output", default=DEMO_OUTPUT, help=f"Where to publish (default: {DEMO_OUTPUT}).")
    p.add_argument("--limit", type=int, default=None, help="Use only the first N demo rows.")
    p.add_argument("--shard-rows", type=int, default=DEMO_SHARD_ROWS,
                   help=f"Rows per checkpointed shard (default: {DEMO_SHARD_ROWS}).")
    p.add_argument("--work-dir", default=None,
                   help="Where shard checkpoints go (default: OUTPUT.selectit-work beside the "
                        "output, removed after success).")
    p.add_argument("--summary-json", default=None, help="Write the run summary as JSON here.")
    p.set_defaults(handler=cmd_demo)
    return parser


def _input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", metavar="INPUT",
                   help="Hub dataset id, local .json/.jsonl/.parquet/.csv file, or save_to_disk folder.")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file with any of this command's options (flag names, - or _); "
                        "flags given here override it.")


def _flat_names(sections: Sequence[type]) -> list[str]:
    return [option_name(cls, f.name) for cls in sections for f in fields(cls)]


def _io_config(args: argparse.Namespace, file_values: dict, *, exclude: Sequence[str] = ()) -> IOConfig:
    extra = {"input": args.input} if args.input else {}
    io = build_config(IOConfig, args, file_values, exclude=exclude, extra=extra)
    if io.input is None:
        raise ConfigError("No input: give INPUT (a Hub dataset id, a local file or a folder) "
                          "or `input:` in --config.")
    return io


# ------------------------------------------------------------------------ commands


def cmd_score(args: argparse.Namespace) -> int:
    valid = [n for n in _flat_names(args.sections) if n != "subset_output"]
    file_values = read_config_file(args.config, [*valid, "input"])
    io = _io_config(args, file_values)
    scorer = build_config(ScorerConfig, args, file_values)
    run = build_config(RunOptions, args, file_values, exclude=("subset_output",))
    if not io.output:
        raise ConfigError("score needs --output (a folder, FILE.parquet or FILE.jsonl).")
    # --distributed or not: one runner, which takes its world from the launcher (torchrun /
    # accelerate launch), or is one process without one.
    config = PipelineConfig(io=io, run=run, models=[scorer], model_params=[None])
    return _run_with_progress(config)


def cmd_select(args: argparse.Namespace) -> int:
    from .io import load_input, save_output
    from .select import select_top, selection_report

    file_values = read_config_file(args.config, [*_flat_names(args.sections), "input", "report"])
    io = _io_config(args, file_values)
    sel = build_config(SelectConfig, args, file_values)
    if not io.output:
        raise ConfigError("select needs --output (a folder, FILE.parquet or FILE.jsonl).")
    scored = load_input(io.input, split=io.split, config_name=io.config_name, revision=io.revision,
                        limit=io.limit)
    ratio = None if (sel.k is not None or sel.threshold is not None) else sel.ratio
    subset = select_top(scored, ratio=ratio, k=sel.k, threshold=sel.threshold, column=sel.column,
                        by=sel.by, order=sel.order)
    save_output(subset, io.output, output_format=io.output_format)
    report = selection_report(scored, subset, column=sel.column, by=sel.by)
    markdown = report.to_markdown()
    report_path = args.report or file_values.get("report")
    if report_path:
        Path(report_path).write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"kept {len(subset)} of {len(scored)} rows -> {io.output}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .io import load_input
    from .validation import run_validation

    file_values = read_config_file(args.config, [*_flat_names(args.sections), "input"])
    io = _io_config(args, file_values, exclude=("output", "output_format"))
    vcfg = build_config(ValidateConfig, args, file_values)
    scorer = build_config(ScorerConfig, args, file_values)
    ds = load_input(io.input, split=io.split, config_name=io.config_name, revision=io.revision,
                    limit=io.limit)
    report = run_validation(ds, vcfg, scorers=[scorer])
    print(report.to_markdown())
    written = [p for p in (vcfg.json, report.plot) if p]
    print(report.headline() + (f" -> {', '.join(written)}" if written else ""))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .io import load_input
    from .pipeline import publish_subset

    valid = [*_flat_names(args.sections), "input", "scored"]
    file_values = read_config_file(args.config, valid)
    io = _io_config(args, file_values, exclude=("output", "output_format"))
    pub = build_config(PublishConfig, args, file_values)
    if not pub.repo_id:
        raise ConfigError("publish needs --repo-id (a Hub dataset repo id or a local directory).")
    subset = load_input(io.input, split=io.split, config_name=io.config_name, revision=io.revision,
                        limit=io.limit)
    scored_path = args.scored or file_values.get("scored")
    scored = load_input(scored_path) if scored_path else None
    where = publish_subset(subset, pub, scored=scored)
    print(f"published {len(subset)} rows as {pub.version} -> {where}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {}
    for cls in (IOConfig, RunOptions):
        for f in fields(cls):
            if hasattr(args, f.name):
                hints = typing.get_type_hints(cls)
                overrides[f.name] = coerce_value("--" + f.name.replace("_", "-"), getattr(args, f.name),
                                                 hints[f.name], from_cli=True)
    config = load_pipeline_config(args.run_config, overrides=overrides)
    if config.publish is not None:
        config.card_data = {"reproduce_command": _command_line(), **(config.card_data or {})}
    return _run_with_progress(config)


def run_config_mapping(mapping: dict) -> int:
    """Run a job given as a `run` mapping (what scripts use); print progress and the summary.

    Args:
        mapping: the same keys as a `run` YAML file (see :func:`load_pipeline_config`).

    Returns:
        The exit status (0 success, 2 configuration error, 1 other SelectIT error).

    Example:
        >>> run_config_mapping({"input": "data.json", "output": "scored", "select": {"ratio": 0.2}})
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _guarded("run", lambda: _run_with_progress(load_pipeline_config(mapping)))


def _command_line() -> str:
    import shlex

    return shlex.join(["hf-selectit", *sys.argv[1:]])


def cmd_demo(args: argparse.Namespace) -> int:
    from importlib import resources

    data = resources.files("hf_selectit") / "data" / "demo.jsonl"
    config = PipelineConfig(
        io=IOConfig(input=str(data), limit=args.limit),
        run=RunOptions(shard_rows=args.shard_rows, batch_size=args.shard_rows,
                       work_dir=args.work_dir, summary_json=args.summary_json),
        models=[ScorerConfig()],
        model_params=[None],
        select=SelectConfig(ratio=0.2),
        publish=PublishConfig(repo_id=args.output, version="v1.0", overwrite=True),
        card_data={
            "license": "apache-2.0",
            "pretty_name": "hf-selectit demo: top 20% of 61 hand-written pairs",
            "language": ["en"],
            "task_categories": ["text-generation"],
            "reproduce_command": _command_line(),
        },
    )
    # Good vs the rest: does the score separate the demo's good rows from the bad ones?
    config.validate = ValidateConfig(label="kind", positive="good")
    code = _run_with_progress(config)
    print()
    print(f"The selected subset is in {args.output}/ (card: {args.output}/README.md). Load it with:")
    print()
    print("    from datasets import load_dataset")
    print(f'    ds = load_dataset("{args.output}", split="train")')
    print()
    return code


# --------------------------------------------------------------------- progress/summary


def _run_with_progress(config: PipelineConfig) -> int:
    from .pipeline import run_pipeline
    from .runner import TqdmProgress

    import datasets
    from tqdm.contrib.logging import logging_redirect_tqdm

    # One bar (ours, rows of all shards and models) instead of datasets' bars; log lines are
    # printed above it instead of through it.
    datasets.disable_progress_bars()
    bar = TqdmProgress()
    try:
        with logging_redirect_tqdm():
            summary, scored, subset = run_pipeline(config, on_progress=bar)
    finally:
        bar.close()
    if not summary.main_process:
        return 0  # the main process of the launch prints the summary
    print_summary(summary)
    if subset is not None and "kind" in subset.column_names:
        # The demo's rows say what they are: show a curator what the scorer preferred.
        from collections import Counter

        total, kept = Counter(scored["kind"]), Counter(subset["kind"])
        print("  kept by kind       " + ", ".join(f"{k} {kept.get(k, 0)}/{n}" for k, n in sorted(total.items())))
    return 0


def _scoring_lines(summary: RunSummary) -> list[str]:
    # Rows and rows x models are different numbers: with two models, 10 rows are 20 row scores.
    n = len(summary.models)
    where = f" by {summary.processes} processes" if summary.processes > 1 else ""
    resumed = f", {summary.rows_resumed} from checkpoints" if summary.rows_resumed else ""
    if n == 1:
        return [f"  rows scored        {summary.rows_scored}{where}{resumed}"]
    return [f"  models             {n} ({summary.rows} rows x {n} = {summary.row_scores} row scores)",
            f"  row scores         {summary.rows_scored} computed{where}{resumed}"]


def print_summary(summary: RunSummary) -> None:
    """The end-of-run summary: rows scored, truncated, errors, kept, time, rows/s."""
    rate = summary.rows_per_second
    lines = [
        "",
        "SelectIT summary",
        f"  rows               {summary.rows}",
        *_scoring_lines(summary),
        f"  truncated          {summary.truncated}",
        f"  errors             {summary.errors}",
    ]
    if summary.kept is not None:
        lines.append(f"  kept               {summary.kept} (by {summary.select_column})")
    if getattr(summary, "validation", None) and "skipped" in summary.validation:
        lines.append(f"  validation         skipped: {summary.validation['skipped']}")
    elif getattr(summary, "validation", None):
        v = summary.validation
        base = ", ".join(f"{k} {x:.3f}" for k, x in v["baselines"].items() if x is not None)
        lines.append(f"  validation         {v['headline']}; baselines: {base}")
    lines += [
        f"  time               {summary.seconds:.1f} s (scoring {summary.scoring_seconds:.1f} s)",
        (f"  rows/s             {rate:.2f}" + (" (row scores of all models per second)" if len(summary.models) > 1 else ""))
        if rate else "  rows/s             - (nothing scored"
        + (": every row from checkpoints)" if summary.rows_resumed else ")"),
    ]
    for m in summary.models:
        resumed = f", {m.shards_resumed} resumed from checkpoints" if m.shards_resumed else ""
        redone = f", {len(m.shards_rescored)} invalid checkpoints rescored" if m.shards_rescored else ""
        lines.append(f"  model {m.model or 'embedded SmolLM2-135M-Instruct'} [{m.column_prefix}]: "
                     f"{m.shards_scored} of {m.shards} shards scored{resumed}{redone}")
    if summary.output:
        lines.append(f"  scored dataset     {summary.output}")
    if summary.subset_output:
        lines.append(f"  subset             {summary.subset_output}")
    if summary.published:
        lines.append(f"  published          {summary.published}")
    print("\n".join(lines))


# ---------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``hf-selectit`` console script; returns the exit status.

    Exit status: 0 success, 2 a configuration or data error (message on stderr), 1 another
    SelectIT error (model loading, publishing).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return _guarded(args.command, lambda: args.handler(args))


def _guarded(command: str, job: Any) -> int:
    try:
        return job()
    except (ConfigError, SchemaError, ScoreColumnError) as exc:
        print(f"hf-selectit {command}: error: {exc}", file=sys.stderr)
        return 2
    except SelectITError as exc:
        print(f"hf-selectit {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
