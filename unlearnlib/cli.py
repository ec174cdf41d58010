"""The `unlearnlib` command (also `python -m unlearnlib`).

    unlearnlib data info [--source mini|hub|FOLDER]   every TOFU config: rows and columns
    unlearnlib data make-mini [--out FOLDER]          regenerate TOFU-mini (byte-identical)
    unlearnlib smoke [--profile tiny]                 train the tiny Llama a few steps, reload it
    unlearnlib eval summarize EVAL.json [--retain-log RETAIN.json] [--json]
                                                      recompute a TOFU summary from per-sample logs
    unlearnlib eval run --model DIR [--profile tiny] [--forget-split forget10]
                        [--reference RETAIN_TOFU_EVAL.json] --out DIR
                                                      evaluate a model on the TOFU suite
    unlearnlib course run [--profile tiny] [--out build/executed] [--only NN] [-p KEY VALUE]
                                                      run the notebooks in order (papermill)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _print_table(rows: list[dict[str, object]]) -> None:
    """Print records as an aligned plain-text table (no pandas needed for a CLI)."""
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def _data_info(args: argparse.Namespace) -> int:
    from unlearnlib.data import data_info, resolve_source

    source = resolve_source(args.source)
    print(f"TOFU configs from {source.describe()}\n")
    _print_table(data_info(source))
    return 0


def _data_make_mini(args: argparse.Namespace) -> int:
    from unlearnlib.paths import REPO_ROOT, artifacts_dir
    from unlearnlib.tofu_mini import generate_tofu_mini

    default = REPO_ROOT / "data" / "tofu_mini" if REPO_ROOT else artifacts_dir("tofu_mini")
    out = Path(args.out) if args.out else default
    counts = generate_tofu_mini(out)
    print(f"Wrote TOFU-mini to {out}")
    _print_table([{"config": k, "rows": v} for k, v in counts.items()])
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from unlearnlib.smoke import smoke_run

    smoke_run(args.profile, steps=args.steps)
    return 0


def _eval_summarize(args: argparse.Namespace) -> int:
    from unlearnlib.eval_logs import summarize_command

    print(summarize_command(args.eval_log, args.retain_log, args.json))
    return 0


def _eval_run(args: argparse.Namespace) -> int:
    from unlearnlib.evaluate import evaluate_model
    from unlearnlib.models import load_model, load_tokenizer
    from unlearnlib.profiles import get_profile, resolve_device, resolve_dtype

    profile = get_profile(args.profile)
    device = resolve_device(profile)
    model = load_model(args.model, resolve_dtype(profile, device), device)
    evaluation = evaluate_model(
        model, load_tokenizer(args.model), profile, forget_split=args.forget_split,
        source=args.source, reference=args.reference, out_dir=args.out,
        mask_mode=args.mask_mode, max_samples=args.max_samples)
    print(evaluation.frame().to_string(index=False))
    print(f"Wrote {' and '.join(str(p) for p in evaluation.paths or ())}")
    return 0


def _course_run(args: argparse.Namespace) -> int:
    from unlearnlib.course import parse_parameter, run_course

    parameters = {key: parse_parameter(value) for key, value in args.parameter}
    run_course(args.profile, args.out, only=args.only, parameters=parameters, strip=args.strip)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand sets `handler`."""
    parser = argparse.ArgumentParser(prog="unlearnlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="TOFU data").add_subparsers(dest="data_command",
                                                                         required=True)
    info = data.add_parser("info", help="print every config with its row count and columns")
    info.add_argument("--source", default=None,
                      help="mini (default), hub, or a folder in the Hub's layout "
                           "(default: $UNLEARNLIB_TOFU_DIR, else mini)")
    info.set_defaults(handler=_data_info)
    mini = data.add_parser("make-mini", help="regenerate TOFU-mini")
    mini.add_argument("--out", default=None, help="folder (default: the checkout's data/)")
    mini.set_defaults(handler=_data_make_mini)

    smoke = commands.add_parser("smoke", help="train the tiny model a few steps, save and reload")
    smoke.add_argument("--profile", default="tiny")
    smoke.add_argument("--steps", type=int, default=20)
    smoke.set_defaults(handler=_smoke)

    evaluation = commands.add_parser("eval", help="TOFU evaluation").add_subparsers(
        dest="eval_command", required=True)
    summarize = evaluation.add_parser(
        "summarize", help="recompute TOFU_SUMMARY.json numbers from a TOFU_EVAL.json")
    summarize.add_argument("eval_log", help="TOFU_EVAL.json (or the folder holding it)")
    summarize.add_argument("--retain-log", default=None,
                           help="the retain model's TOFU_EVAL.json (forget quality, privleak)")
    summarize.add_argument("--json", action="store_true", help="print one JSON object")
    summarize.set_defaults(handler=_eval_summarize)
    run = evaluation.add_parser(
        "run", help="evaluate a model on TOFU; write TOFU_EVAL.json and TOFU_SUMMARY.json")
    run.add_argument("--model", required=True, help="a save_pretrained folder or a Hub id")
    run.add_argument("--profile", default="tiny")
    run.add_argument("--forget-split", default=None, help="default: the profile's (forget10)")
    run.add_argument("--source", default=None, help="mini, hub or a folder (default: profile's)")
    run.add_argument("--reference", default=None,
                     help="the retain model's TOFU_EVAL.json (forget quality, privleak)")
    run.add_argument("--mask-mode", default="lengths", choices=["lengths", "open-unlearning"],
                     help="open-unlearning to compare with its published logs")
    run.add_argument("--max-samples", type=int, default=None,
                     help="first N rows of every split, for a quick look")
    run.add_argument("--out", required=True, help="folder for the two JSON files")
    run.set_defaults(handler=_eval_run)

    course = commands.add_parser("course", help="the notebook course").add_subparsers(
        dest="course_command", required=True)
    course_run = course.add_parser(
        "run", help="execute the notebooks in order with papermill, timing each")
    course_run.add_argument("--profile", default="tiny", help="tiny (default), colab-t4, gpu-full")
    course_run.add_argument("--out", default="build/executed",
                            help="folder for the executed notebooks and summary.json")
    course_run.add_argument("--only", action="append", metavar="NN",
                            help="run only notebook NN, e.g. 01 (repeatable)")
    course_run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                            metavar=("KEY", "VALUE"),
                            help="set a notebook parameter (a Python literal, else text)")
    course_run.add_argument("--strip", action="store_true",
                            help="drop volatile metadata (timings, paths), as golden notebooks do")
    course_run.set_defaults(handler=_course_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line to stderr and exit with status 2."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ValueError, KeyError, FileNotFoundError, ConnectionError, RuntimeError) as error:
        print(f"unlearnlib: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
