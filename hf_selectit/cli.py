"""The `hf-selectit` command: score | select | publish | validate | run | demo.

Thin: the top level is plain argparse (`hf-selectit --help` imports nothing heavy); a command's
options are generated from the dataclasses of :mod:`hf_selectit.config` by
:func:`hf_selectit.options.option_parser` (HfArgumentParser). `--config FILE.yaml` supplies any
option of a command (its `method:` included); flags win over the file.

Exit status: 0 success; 2 a user error (bad option, bad input file, missing column), printed
as one short message in command-line terms, no traceback (``--debug`` shows it); 1 another
failure (model loading, publishing).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

from . import options as opt
from .config import (DEFAULT_METHOD, METHOD_CONFIGS, DemoOptions, IOConfig, PipelineConfig, PublishConfig, RayConfig,
                     ReportOptions, RunOptions, SelectConfig, ValidateConfig, method_config_class)
from .errors import ConfigError
from .redaction import redact
# print_summary and cli_terms: importable from here too.
from .summary import cli_terms, configure_logging, console, guarded, print_summary, report_error  # noqa: F401
from .summary import run_with_progress, write_report

EXAMPLES_PACKAGE = "hf_selectit.configs"
_IO_IN = ("input", "output", "output_format")  # a command that writes nothing: no output options
# name -> (help, option sections (None: the --method's scorer config), options not offered)
COMMANDS: dict = {
    "score": ("Add score columns to a dataset (provenance in selectit.json beside it).",
              {"io": IOConfig, "scorer": None, "run": RunOptions, "ray": RayConfig}, ("input", "subset_output")),
    "select": ("Keep the top rows of a scored dataset (docs/method.md section 5).",
               {"io": IOConfig, "select": SelectConfig, "report": ReportOptions}, ("input",)),
    "publish": ("Publish a selected subset to the Hub or a local folder, with a card and a version tag.",
                {"io": IOConfig, "publish": PublishConfig}, _IO_IN),
    "validate": ("Check scores against labels (ROC-AUC, Spearman) or preference pairs (pairwise "
                 "accuracy), beside baselines, each figure with a bootstrap 95%% interval.",
                 {"io": IOConfig, "validate": ValidateConfig, "scorer": None}, _IO_IN),
    "run": ("score -> fuse -> select -> publish from one YAML file (relative input paths are read "
            "from its folder; a restarted run skips the shards it scored).", {"io": IOConfig, "run": RunOptions}, ()),
    "demo": ("Score the bundled demo set with the embedded SmolLM2 and publish the top 20%% to "
             "./selective-demo.", {"demo": DemoOptions}, ()),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: global flags and the command names (:func:`parse_command` parses the rest)."""
    parser = opt.SuggestingParser(
        prog="hf-selectit",
        description="SelectIT instruction-data selection for Hugging Face datasets: score rows "
                    "with an LLM's own rating probabilities, keep the best, publish the subset. "
                    "`hf-selectit COMMAND --help` lists a command's options.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="More logging from hf-selectit (-vv: debug). Other libraries stay quiet.")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="Print only errors and the final line (no progress bar, no summary).")
    parser.add_argument("--debug", action="store_true", help="Show the traceback of an error.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (text, _, _) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def parse_command(argv: Sequence[str]) -> argparse.Namespace:
    """A whole ``hf-selectit`` command line: ``command``, the global flags, each option section
    of the command as its dataclass (``io``, ``scorer``, ...) and ``flags`` (the options given).
    ConfigError for a bad value or file key; SystemExit for ``--help`` or an unknown flag.

    Example:
        >>> parse_command(["score", "data.jsonl", "--alpha", "0.3"]).scorer.alpha
        0.3
    """
    top, rest = build_parser().parse_known_args(list(argv))
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config")
    early.add_argument("--method")
    pre, _ = early.parse_known_args(rest)
    text, sections, skip = COMMANDS[top.command]
    if "scorer" in sections:  # the scorer's options are those of the flag's, or the file's, method
        method = pre.method or (opt.load_yaml(pre.config).get("method") if pre.config else None)
        where = "--method" if pre.method or not pre.config else f"{pre.config}: method"
        sections = {**sections, "scorer": method_config_class(method or DEFAULT_METHOD, where=where)}
    # `help` texts are %-formatted by argparse (so they write %%), a description is printed as is.
    parser = opt.option_parser(sections, skip=skip, prog=f"hf-selectit {top.command}",
                               description=text.replace("%%", "%"))
    if top.command == "run":
        parser.add_argument("run_config", metavar="CONFIG.yaml", nargs="?", help="The job's YAML file.")
        parser.add_argument("--example", metavar="NAME", help="Run an example config shipped with the "
                            f"package: {', '.join(example_names())}. `--example NAME --print` shows it.")
        parser.add_argument("--print", dest="print_config", action="store_true",
                            help="Print the YAML file (with --example: the shipped one) and exit.")
    elif top.command != "demo":
        parser.add_argument("input", nargs="?", metavar="INPUT", action=opt.Given,
                            help="Hub dataset id, local .json/.jsonl/.parquet/.csv file, or save_to_disk folder.")
        parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with any of this command's "
                            "options (flag names, - or _); flags given here override it.")
    if "scorer" in sections:
        parser.add_argument("--method", default=DEFAULT_METHOD, metavar="NAME",
                            help=f"Scoring method: {', '.join(sorted(METHOD_CONFIGS))}. "
                                 f"`hf-selectit {top.command} --method NAME --help` lists its options.")
    ns = parser.parse(rest, config=pre.config)
    ns.__dict__.update(vars(top))
    return ns


# ------------------------------------------------------------------------ commands


def _input(ns: argparse.Namespace, *, output: bool = False) -> IOConfig:
    if ns.io.input is None:
        raise ConfigError("No input: give INPUT (a Hub dataset id, a local file or a folder) "
                          "or `input:` in --config.")
    if output and not ns.io.output:
        raise ConfigError(f"{ns.command} needs --output (a folder, FILE.parquet or FILE.jsonl).")
    return ns.io


def _load(io: IOConfig) -> Any:
    from .io import load_input

    return load_input(io.input, split=io.split, config_name=io.config_name, revision=io.revision, limit=io.limit)


def cmd_score(ns: argparse.Namespace) -> int:
    return run_with_progress(PipelineConfig(io=_input(ns, output=True), run=ns.run, ray=ns.ray, models=[ns.scorer],
                                            model_params=[None]))


def cmd_select(ns: argparse.Namespace) -> int:
    from .io import check_output_path, save_output
    from .report import selection_report
    from .select import select_top

    io, sel = _input(ns, output=True), ns.select
    check_output_path(io.output, output_format=io.output_format)
    scored = _load(io)
    subset = select_top(scored, column=sel.column, **sel.rule())
    save_output(subset, io.output, output_format=io.output_format)
    result = selection_report(scored, subset, column=sel.column, by=sel.by)
    write_report(result, ns.report)
    console.info(result.to_markdown())
    console.final(f"kept {len(subset)} of {len(scored)} rows -> {io.output}")
    return 0


def cmd_validate(ns: argparse.Namespace) -> int:
    from .validation import run_validation

    report = run_validation(_load(_input(ns)), ns.validate, scorers=[ns.scorer])
    print(redact(report.to_markdown()))
    written = [p for p in (ns.validate.json, report.plot) if p]
    console.final(report.headline() + (f" -> {', '.join(written)}" if written else ""))
    return 0


def cmd_publish(ns: argparse.Namespace) -> int:
    from .io import load_input
    from .pipeline import publish_subset

    io, pub = _input(ns), ns.publish
    if not pub.repo_id:
        raise ConfigError("publish needs --repo-id (a Hub dataset repo id or a local directory).")
    opt.check_publish_target(pub, label=ns.labels["repo_id"])
    subset = _load(io)
    scored = load_input(pub.scored) if pub.scored else None
    where = publish_subset(subset, pub, scored=scored, source=pub.source,
                           card_data={"reproduce_command": _command_line()})
    console.final(f"published {len(subset)} rows as {pub.version} -> {where}")
    return 0


def example_names() -> list[str]:
    """Names of the example run configs shipped in ``hf_selectit/configs``."""
    from importlib import resources

    return sorted(p.name[:-5] for p in resources.files(EXAMPLES_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def example_path(name: str) -> Path:
    """The file of a shipped example config (``demo``, ``selective_alpaca``)."""
    from importlib import resources

    names = example_names()
    if name not in names:
        raise ConfigError(f"--example {name!r} is not a shipped example.{opt.suggest(name, names)} "
                          f"Examples: {names}.")
    return Path(str(resources.files(EXAMPLES_PACKAGE) / f"{name}.yaml"))


def cmd_run(ns: argparse.Namespace) -> int:
    if ns.example and ns.run_config:
        raise ConfigError("give CONFIG.yaml or --example NAME, not both.")
    if not ns.example and not ns.run_config:
        raise ConfigError(f"give CONFIG.yaml, or --example NAME ({', '.join(example_names())}).")
    path = example_path(ns.example) if ns.example else Path(ns.run_config)
    if ns.print_config:
        opt.load_yaml(path)  # a readable YAML mapping
        print(redact(path.read_text(encoding="utf-8")), end="")
        return 0
    config = opt.load_run_config(path, overrides=ns.flags, override_labels=ns.labels)
    if ns.example:
        # A shipped example's relative paths point inside the installed package: no copy of its
        # YAML is published; the card's command (`run --example NAME`) reproduces it anywhere.
        config.config_file = None
    if config.publish is not None:
        config.card_data = {"reproduce_command": _command_line(), **(config.card_data or {})}
    return run_with_progress(config)


def run_config_mapping(mapping: dict) -> int:
    """Run a `run` mapping (what scripts use) as `hf-selectit run` does; returns the exit status."""
    configure_logging(0, quiet=False)
    return guarded("run", lambda: run_with_progress(opt.load_run_config(mapping)), debug=False)


def _command_line() -> str:
    # Shown on the card and in the uploaded files: never with a token in it.
    return redact(shlex.join(["hf-selectit", *sys.argv[1:]]))


def cmd_demo(ns: argparse.Namespace) -> int:
    demo = ns.demo
    overrides = {"limit": demo.limit, "shard_rows": demo.shard_rows, "batch_size": demo.shard_rows,
                 "work_dir": demo.work_dir, "summary_json": demo.summary_json}
    config = opt.load_run_config(example_path("demo"), overrides={k: v for k, v in overrides.items() if v is not None})
    config.publish = replace(config.publish, repo_id=demo.output)
    config.config_file = None  # the shipped example, as in cmd_run
    config.card_data = {**(config.card_data or {}), "reproduce_command": _command_line()}
    code = run_with_progress(config)
    console.info(f"\nThe selected subset is in {demo.output}/ (card: {demo.output}/README.md). Load it with:\n\n"
                 f"    from datasets import load_dataset\n    ds = load_dataset({demo.output!r}, split=\"train\")\n")
    return code


# ---------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``hf-selectit`` console script; returns the exit status (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    command = next((a for a in argv if a in COMMANDS), "hf-selectit")
    try:
        ns = parse_command(argv)
    except ConfigError as exc:
        return report_error(command, exc, code=2, debug=debug)
    configure_logging(ns.verbose, quiet=ns.quiet)
    handler = globals()[f"cmd_{ns.command}"]
    # --quiet holds for this command only: a caller in the same process (a script, a notebook,
    # the tests) that runs another command or prints a summary afterwards is not silenced.
    previous, console.quiet = console.quiet, ns.quiet
    try:
        return guarded(ns.command, lambda: handler(ns), debug=ns.debug)
    finally:
        console.quiet = previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
