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
    unlearnlib models build [--profile tiny]          train (or find cached) tiny base/full/retain
    unlearnlib unlearn --method npo --out DIR [--profile tiny] [--model DIR] [--epochs N]
                       [--lr LR] [--beta B] [--alpha A] [--save-steps N] [--resume]
                                                      unlearn the forget split, save the model
    unlearnlib audit --model DIR --out DIR [--profile tiny] [--model-name NAME]
                     [--families direct,format_shift,...] [-p KEY VALUE]
                                                      leak-audit a model against full and retain
    unlearnlib sweep run GRID.yaml [--profile tiny] [--out runs] [--jobs N] [--shard i/n]
                                                      one notebook run per grid point, resumable
    unlearnlib sweep report RUNS [--prune]            rank by forget quality, heatmap, rank 1
    unlearnlib card RUNS/POINT                        the point's model card (README.md)
    unlearnlib memory [--profile colab-t4|gpu-full] [--markdown]
                                                      GPU memory per course step, Llama-3.2-1B
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


def _models_build(args: argparse.Namespace) -> int:
    from unlearnlib.model_zoo import build_tiny_models
    from unlearnlib.profiles import get_profile

    profile = get_profile(args.profile)
    if profile.full_model != "tiny":
        raise ValueError(f"Profile {profile.name!r} uses published models ({profile.full_model}); "
                         "there is nothing to build. Use --profile tiny.")
    for role, folder in build_tiny_models(profile).items():
        print(f"{role:>6}: {folder}")
    return 0


def _unlearn(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from unlearnlib.data import RETAIN_OF_FORGET, load_tofu
    from unlearnlib.model_zoo import load_zoo_model
    from unlearnlib.models import load_model, load_tokenizer
    from unlearnlib.profiles import get_profile, resolve_device
    from unlearnlib.unlearn import objective, save_trained, training_dtype, unlearn

    overrides = {"unlearn_epochs": args.epochs, "learning_rate": args.lr}
    profile = get_profile(args.profile, **{k: v for k, v in overrides.items() if v is not None})
    device = resolve_device(profile)
    if device.type == "cuda":  # under accelerate/torchrun: this process's GPU, not cuda:0
        from accelerate import PartialState

        device = PartialState().device
    if args.model:
        model = load_model(args.model, training_dtype(profile, device), device)
        tokenizer = load_tokenizer(args.model)
    else:
        model, tokenizer = load_zoo_model(profile, "full", training_dtype(profile, device), device)
    forget = load_tofu(profile.forget_split, profile.data_source)
    if args.max_forget:
        forget = forget.select(range(min(args.max_forget, len(forget))))
    retain = load_tofu(RETAIN_OF_FORGET[profile.forget_split], profile.data_source)
    weights = {k: getattr(args, k) for k in ("beta", "alpha", "gamma", "delta")}
    goal = objective(args.method, **{k: v for k, v in weights.items() if v is not None})
    out = Path(args.out)
    extra = {"max_steps": args.max_steps} if args.max_steps else {}
    trainer = unlearn(model, tokenizer, forget, retain, profile, out / "checkpoints", goal,
                      save_steps=args.save_steps, resume_from_checkpoint=args.resume or None,
                      **extra)
    if trainer.is_world_process_zero():
        save_trained(trainer.model, tokenizer, out, merge=not args.adapter_only)
        record = {"objective": dataclasses.asdict(goal), "profile": profile.name,
                  "world_size": trainer.args.world_size, "global_step": trainer.state.global_step,
                  "log_history": trainer.state.log_history}
        (out / "unlearn_log.json").write_text(json.dumps(record, indent=2))
        print(f"Unlearned with {goal} in {trainer.state.global_step} steps "
              f"({trainer.args.world_size} process(es)); wrote {out}")
    return 0


#: What `audit -p KEY VALUE` may set besides the fields of `audit.AuditSettings`.
_AUDIT_OPTIONS = ("seed", "batch_size", "max_new_tokens")


def _audit(args: argparse.Namespace) -> int:
    import dataclasses

    from unlearnlib.audit import FAMILIES, AuditSettings, check_families, run_audit
    from unlearnlib.course import parse_parameter
    from unlearnlib.model_zoo import load_zoo_model
    from unlearnlib.models import load_model, load_tokenizer
    from unlearnlib.profiles import get_profile, resolve_device, resolve_dtype
    from unlearnlib.recall import STATISTICS

    # Bad input fails here, before the zoo models load (a tiny one may first have to train).
    folder = Path(args.model)
    if not folder.is_dir():
        raise FileNotFoundError(f"--model {folder} does not exist: pass the folder that "
                                "`unlearnlib unlearn --out` wrote.")
    if not any((folder / f).is_file() for f in ("model.safetensors",
                                                "model.safetensors.index.json")):
        raise FileNotFoundError(f"--model {folder} has no model.safetensors: pass the folder "
                                "that `unlearnlib unlearn --out` wrote.")
    families = list(FAMILIES) if args.families is None else [
        f.strip() for f in args.families.split(",") if f.strip()]
    check_families(families)
    name = args.model_name or folder.resolve().name
    if name in ("full", "retain"):
        raise ValueError(f"--model-name {name!r} is taken by the profile's {name} model; "
                         "choose another name.")
    options = {key: parse_parameter(value) for key, value in args.parameter}
    valid = [f.name for f in dataclasses.fields(AuditSettings)] + list(_AUDIT_OPTIONS)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"Unknown -p key(s) {unknown}. Valid keys: {', '.join(valid)}.")

    profile = get_profile(args.profile)
    device = resolve_device(profile)
    models = {role: load_zoo_model(profile, role) for role in ("full", "retain")}
    models[name] = (load_model(folder, resolve_dtype(profile, device), device),
                    load_tokenizer(folder))
    result = run_audit(models, profile, families=families, out_dir=args.out, **options)
    paths = result.paths or {}
    for statistic in STATISTICS:
        print(f"{statistic} (95 % intervals in {paths['table'].name}):")
        print(result.estimates(statistic).round(3).to_string() + "\n")
    print(result.membership.round(3).to_string(index=False))
    print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _sweep_run(args: argparse.Namespace) -> int:
    from unlearnlib.course import parse_parameter
    from unlearnlib.sweep import parse_shard, run_sweep

    extra = {key: parse_parameter(value) for key, value in args.parameter}
    runs = run_sweep(args.grid, args.profile, args.out, jobs=args.jobs,
                     shard=parse_shard(args.shard), extra=extra)
    return 1 if any(run.status == "failed" for run in runs) else 0


def _sweep_report(args: argparse.Namespace) -> int:
    from unlearnlib.sweep import sweep_report

    report = sweep_report(args.runs, grid_size=args.grid_size, prune=args.prune)
    print(report.table.to_string(index=False))
    print(f"rank 1: {report.best}\nwrote {', '.join(str(p) for p in report.files.values())}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from unlearnlib.card import write_card

    print(f"wrote {write_card(args.point)}")
    return 0


def _memory(args: argparse.Namespace) -> int:
    from unlearnlib.memory import course_memory_table, to_markdown

    names = [args.profile] if args.profile else ["colab-t4", "gpu-full"]
    table = course_memory_table(names, seq_len=args.seq_len, answer_len=args.answer_len)
    for name, rows in table.groupby("profile", sort=False):
        print(f"{name}: {rows['gpu_gib'].iloc[0]:g} GiB GPU, memory in GiB\n")
        rows = rows.drop(columns=["profile", "gpu_gib"])
        print(to_markdown(rows) if args.markdown else rows.round(2).to_string(index=False))
        print()
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

    models = commands.add_parser("models", help="the models to unlearn from").add_subparsers(
        dest="models_command", required=True)
    build = models.add_parser("build", help="train the tiny base/full/retain models (cached)")
    build.add_argument("--profile", default="tiny")
    build.set_defaults(handler=_models_build)

    unlearn = commands.add_parser(
        "unlearn", help="unlearn the profile's forget split from its full model "
                        "(also under `accelerate launch -m unlearnlib unlearn ...`)")
    unlearn.add_argument("--method", default="npo", choices=["ga", "graddiff", "npo", "simnpo"])
    unlearn.add_argument("--out", required=True, help="folder for the model and unlearn_log.json")
    unlearn.add_argument("--profile", default="tiny")
    unlearn.add_argument("--model", default=None,
                         help="start from this folder instead of the profile's full model")
    unlearn.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    unlearn.add_argument("--lr", type=float, default=None, help="default: the profile's")
    for name in ("beta", "alpha", "gamma", "delta"):
        unlearn.add_argument(f"--{name}", type=float, default=None,
                             help=f"{name} of the objective (default: the method's)")
    unlearn.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    unlearn.add_argument("--max-forget", type=int, default=None,
                         help="only the first N forget rows, for a quick run")
    unlearn.add_argument("--save-steps", type=int, default=None,
                         help="checkpoint every N steps into OUT/checkpoints")
    unlearn.add_argument("--resume", action="store_true",
                         help="resume from the last checkpoint in OUT/checkpoints")
    unlearn.add_argument("--adapter-only", action="store_true",
                         help="under LoRA, save only the adapter instead of a merged model")
    unlearn.set_defaults(handler=_unlearn)

    audit = commands.add_parser(
        "audit", help="leak-audit a model against the profile's full and retain models; "
                      "write the records, leak table, membership table and figure")
    audit.add_argument("--model", required=True,
                       help="the audited (e.g. unlearned) model's folder, e.g. runs/npo")
    audit.add_argument("--model-name", default=None,
                       help="its name in the records and table (default: the folder's name)")
    audit.add_argument("--profile", default="tiny")
    audit.add_argument("--out", required=True, help="folder for the audit's files")
    audit.add_argument("--families", default=None,
                       help="comma-separated probe families, e.g. direct,format_shift "
                            "(default: every family)")
    audit.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                       metavar=("KEY", "VALUE"),
                       help="an AuditSettings field (e.g. n_samples 4), seed, batch_size or "
                            "max_new_tokens")
    audit.set_defaults(handler=_audit)

    sweep = commands.add_parser("sweep", help="hyper-parameter sweeps").add_subparsers(
        dest="sweep_command", required=True)
    sweep_run = sweep.add_parser("run", help="run every grid point's notebook (papermill), "
                                             "skipping finished points")
    sweep_run.add_argument("grid", help="grid YAML: parameter: [values, ...]")
    sweep_run.add_argument("--profile", default="tiny")
    sweep_run.add_argument("--out", default="runs", help="one folder per point in here")
    sweep_run.add_argument("--jobs", type=int, default=1, help="points run in parallel")
    sweep_run.add_argument("--shard", default="0/1",
                           help="i/n: run the points k with k mod n == i (i from 0)")
    sweep_run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                           metavar=("KEY", "VALUE"),
                           help="a notebook parameter for every point, e.g. MAX_SAMPLES 10")
    sweep_run.set_defaults(handler=_sweep_run)
    sweep_rep = sweep.add_parser("report", help="rank the points, heatmap, keep rank 1")
    sweep_rep.add_argument("runs", help="the sweep's --out folder")
    sweep_rep.add_argument("--grid-size", type=int, default=None,
                           help="points in the grid (default: the finished ones)")
    sweep_rep.add_argument("--prune", action="store_true",
                           help="delete every checkpoint but the rank-1 point's")
    sweep_rep.set_defaults(handler=_sweep_report)

    card = commands.add_parser("card", help="write a sweep point's model card (README.md)")
    card.add_argument("point", help="a point's folder, e.g. runs/npo_lr0.0005_ep4_a1_b0.1")
    card.set_defaults(handler=_card)

    memory = commands.add_parser(
        "memory", help="GPU memory of each course step for Llama-3.2-1B, from parameter counts")
    memory.add_argument("--profile", default=None, choices=["colab-t4", "gpu-full"],
                        help="one profile (default: both)")
    memory.add_argument("--seq-len", type=int, default=256, help="tokens of a chat")
    memory.add_argument("--answer-len", type=int, default=64, help="tokens of its answer")
    memory.add_argument("--markdown", action="store_true", help="markdown tables (README)")
    memory.set_defaults(handler=_memory)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line to stderr and exit with status 2."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:  # e.g. `unlearnlib memory | head`: the reader has what it wanted
        sys.stdout = None  # nothing more can be written, not even the interpreter's flush
        return 0
    except (ValueError, KeyError, FileNotFoundError, ConnectionError, RuntimeError) as error:
        print(f"unlearnlib: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
