"""The `unlearnlib` command (also `python -m unlearnlib`).

    unlearnlib data info [--source mini|hub|FOLDER]   every TOFU config: rows and columns
    unlearnlib data make-mini [--out FOLDER]          regenerate TOFU-mini (byte-identical)
    unlearnlib eval summarize EVAL.json [--retain-log RETAIN.json] [--json]
                                                      recompute a TOFU summary from per-sample logs
    unlearnlib eval run --model DIR [--profile tiny] [--forget-split forget10]
                        [--reference RETAIN_TOFU_EVAL.json] --out DIR
                                                      evaluate a model on the TOFU suite
    unlearnlib course run [--profile tiny] [--out build/executed] [--only NN] [-p KEY VALUE]
                          [--notebooks DIR]           run the notebooks in order (papermill)
    unlearnlib models build [--profile tiny] [--from-scratch]
                                                      tiny full/retain models: shipped or trained
    unlearnlib models ship [--out FOLDER]             maintainers: retrain and ship the tiny models
    unlearnlib models standin --size 1b|small --out DIR
                                                      random Llama-3.2-1B stand-in, real tokenizer
    unlearnlib unlearn --method npo --out DIR [--profile tiny] [--model DIR] [--epochs N]
                       [--lr LR] [--beta B] [--alpha A] [--save-steps N] [--[no-]resume]
                                                      unlearn the forget split, save the model;
                                                      the same command again resumes after Ctrl-C
    unlearnlib audit --model DIR --out DIR [--profile tiny] [--model-name NAME]
                     [--families direct,format_shift,...] [-p KEY VALUE]
                     [--summary TOFU_SUMMARY.json]    leak-audit a model against full and retain,
                                                      beside the seed card's published views
    unlearnlib sweep run GRID.yaml [--profile tiny] [--out runs] [--jobs N] [--shard i/n]
                                                      one notebook run per grid point, resumable
    unlearnlib sweep report RUNS [--prune]            rank by forget quality, heatmap, rank 1
    unlearnlib card RUNS/POINT                        the point's model card (README.md)
    unlearnlib memory [--profile colab-t4|gpu-full] [--markdown]
                                                      GPU memory per course step, Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn


def parse_parameter(value: str) -> Any:
    """A command-line value as a Python literal when it is one ("5e-5", "True"), else text."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


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
    from unlearnlib.data.tofu import data_info, resolve_source

    source = resolve_source(args.source)
    print(f"TOFU configs from {source.describe()}\n")
    _print_table(data_info(source))
    return 0


def _data_make_mini(args: argparse.Namespace) -> int:
    from unlearnlib.data.tofu_mini import generate_tofu_mini
    from unlearnlib.paths import REPO_ROOT, artifacts_dir

    default = REPO_ROOT / "data" / "tofu_mini" if REPO_ROOT else artifacts_dir("tofu_mini")
    out = Path(args.out) if args.out else default
    counts = generate_tofu_mini(out)
    print(f"Wrote TOFU-mini to {out}")
    _print_table([{"config": k, "rows": v} for k, v in counts.items()])
    return 0


def format_summary(summary: Mapping[str, float], title: str | None = None) -> str:
    """An aligned two-column table of a summary (6 significant digits)."""
    width = max([len("metric"), *(len(key) for key in summary)])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  value")
    lines.append(f"{'-' * width}  {'-' * 11}")
    lines.extend(f"{key:<{width}}  {value:.6g}" for key, value in summary.items())
    return "\n".join(lines)


def summarize_command(eval_path: str, retain_log: str | None = None,
                      as_json: bool = False) -> str:
    """``unlearnlib eval summarize EVAL.json [--retain-log RETAIN.json] [--json]``.

    Returns the text to print: one JSON object with TOFU_SUMMARY.json's keys (indented as
    open-unlearning writes it) with ``as_json``, else an aligned table.
    """
    import json

    from unlearnlib.evaluation.eval_logs import load_eval_log, summarize_eval_log

    log = load_eval_log(eval_path)
    retain = load_eval_log(retain_log) if retain_log is not None else None
    try:
        summary = summarize_eval_log(log, retain)
    except ValueError as err:
        raise ValueError(f"{eval_path} (retain log {retain_log}): {err}") from err
    if as_json:
        return json.dumps(summary, indent=4)
    title = f"TOFU summary of {eval_path}"
    title += f" (retain reference {retain_log})" if retain_log else " (no retain reference)"
    return format_summary(summary, title)


def _eval_summarize(args: argparse.Namespace) -> int:
    print(summarize_command(args.eval_log, args.retain_log, args.json))
    return 0


def _eval_run(args: argparse.Namespace) -> int:
    from unlearnlib.evaluation.evaluate import evaluate_model, evaluation_inputs
    from unlearnlib.models.loading import check_model_folder, load_for_profile

    # Bad input fails here, before the model loads (minutes at 1B scale).
    profile, forget_split, source = evaluation_inputs(args.profile, args.forget_split,
                                                      args.source, args.max_samples)
    check_model_folder(args.model)
    model, tokenizer = load_for_profile(args.model, profile)
    evaluation = evaluate_model(
        model, tokenizer, profile, forget_split=forget_split,
        source=source, reference=args.reference, out_dir=args.out,
        mask_mode=args.mask_mode, max_samples=args.max_samples)
    print(evaluation.frame().to_string(index=False))
    print(f"Wrote {' and '.join(str(p) for p in evaluation.paths.values())}")
    return 0


def _course_run(args: argparse.Namespace) -> int:
    from unlearnlib.course.runner import run_course

    parameters = {key: parse_parameter(value) for key, value in args.parameter}
    run_course(args.profile, args.out, only=args.only, parameters=parameters,
               notebooks=args.notebooks, strip=args.strip)
    return 0


def _models_build(args: argparse.Namespace) -> int:
    from unlearnlib.profiles import get_profile
    from unlearnlib.train.zoo import build_tiny_models, describe_source, same_as_shipped

    profile = get_profile(args.profile, train_from_scratch=args.from_scratch)
    if not profile.trains_own_models:
        raise ValueError(f"Profile {profile.name!r} uses published models ({profile.full_model}); "
                         "there is nothing to build. Use --profile tiny.")
    for role, folder in build_tiny_models(profile).items():
        print(f"{role:>6}: {describe_source(folder)}\n        {folder}")
        same = same_as_shipped(profile, role, folder)
        if same is not None:
            answer = "yes" if same else "no"
            print(f"        the same weights as the shipped {role} model: {answer}")
    return 0


def _models_ship(args: argparse.Namespace) -> int:
    from unlearnlib.models.shipped import SHIPPED_DIR
    from unlearnlib.train.zoo import ship_tiny_models

    folder = ship_tiny_models(Path(args.out) if args.out else SHIPPED_DIR)
    print(f"Shipped the tiny models to {folder}")
    return 0


def _models_standin(args: argparse.Namespace) -> int:
    from unlearnlib.models.standin import write_standin

    print(f"Wrote the {args.size} stand-in to {write_standin(args.size, args.out, args.seed)}")
    return 0


#: Written into OUT/checkpoints: a plain rerun resumes only a run with the same settings.
_RUN_SETTINGS = "run_settings.json"


def _resume_from(folder: Path, settings: dict[str, object], resume: bool | None) -> Path | None:
    """The checkpoint `unlearn` continues from, and the settings recorded for the next rerun.

    `resume` None (the default): the newest complete checkpoint if the recorded settings are
    these, an error if they differ; True: the newest complete checkpoint, which must exist;
    False: delete the old checkpoints and start from step 0.
    """
    import json
    import shutil

    from unlearnlib.train.unlearn import last_checkpoint

    if resume is False:
        shutil.rmtree(folder, ignore_errors=True)
    checkpoint = last_checkpoint(folder) if folder.is_dir() else None
    if resume and checkpoint is None:
        raise FileNotFoundError(f"No complete checkpoint in {folder} to resume from: run "
                                "without --resume to start from step 0.")
    record = folder / _RUN_SETTINGS
    settings = json.loads(json.dumps(settings))
    if checkpoint is not None and resume is None:
        saved = json.loads(record.read_text()) if record.is_file() else {}
        changed = [key for key, value in settings.items() if saved.get(key) != value]
        if changed:
            raise ValueError(f"{folder} holds checkpoints of a run with other settings "
                             f"({', '.join(changed)}): pass --resume to continue it anyway, "
                             "--no-resume to start over, or choose another --out.")
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings, indent=2) + "\n")
    if checkpoint is not None:
        print(f"resuming from {checkpoint}", flush=True)
    return checkpoint


def _unlearn(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from unlearnlib.checks import check_at_least_one
    from unlearnlib.models.loading import check_model_folder
    from unlearnlib.profiles import get_profile
    from unlearnlib.train.pipeline import unlearn_from_profile
    from unlearnlib.train.prepare import save_trained
    from unlearnlib.train.unlearn import check_schedule, last_checkpoint, objective

    # Bad input fails here, before a model loads (the tiny full model may first have to train).
    overrides = {"unlearn_epochs": args.epochs, "learning_rate": args.lr}
    profile = get_profile(args.profile, **{k: v for k, v in overrides.items() if v is not None})
    check_schedule(profile.learning_rate, profile.unlearn_epochs)
    for flag, value in (("--max-forget", args.max_forget), ("--max-steps", args.max_steps),
                        ("--save-steps", args.save_steps or None)):
        if value is not None:
            check_at_least_one(value, flag)
    weights = {k: getattr(args, k) for k in ("beta", "alpha", "gamma", "delta")}
    goal = objective(args.method, **{k: v for k, v in weights.items() if v is not None})
    if args.model:
        check_model_folder(args.model)
    out = Path(args.out)
    settings = {"objective": dataclasses.asdict(goal), "profile": profile.name,
                "learning_rate": profile.learning_rate, "epochs": profile.unlearn_epochs,
                "model": args.model, "max_forget": args.max_forget, "max_steps": args.max_steps,
                "save_steps": args.save_steps}
    resume = _resume_from(out / "checkpoints", settings, args.resume)
    extra = {"max_steps": args.max_steps} if args.max_steps else {}
    try:
        trainer = unlearn_from_profile(
            profile, out / "checkpoints", goal, full_model=args.model,
            max_forget=args.max_forget, resume_from_checkpoint=resume,
            save_steps="epoch" if args.save_steps is None else args.save_steps, **extra)
    except KeyboardInterrupt as interrupt:
        kept = last_checkpoint(out / "checkpoints")
        raise KeyboardInterrupt(
            f"{kept} is kept; run the same command again to resume from it" if kept else
            "no checkpoint was complete yet; run the same command again to start over"
        ) from interrupt
    if trainer.is_world_process_zero():
        save_trained(trainer.model, trainer.processing_class, out, merge=not args.adapter_only)
        record = {"objective": dataclasses.asdict(goal), "profile": profile.name,
                  "world_size": trainer.args.world_size, "global_step": trainer.state.global_step,
                  "log_history": trainer.state.log_history}
        (out / "unlearn_log.json").write_text(json.dumps(record, indent=2))
        print(f"Unlearned with {goal} in {trainer.state.global_step} steps "
              f"({trainer.args.world_size} process(es)); wrote {out}")
    _end_processes()
    return 0


def _end_processes() -> None:
    """Under torchrun / accelerate launch, wait for every process and close the group, so no
    process exits while its communication threads still run (an abort at exit otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


#: What `audit -p KEY VALUE` may set besides the fields of `profiles.AuditSettings`.
_AUDIT_OPTIONS = ("seed", "batch_size", "max_new_tokens")


def _audit(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    import matplotlib.pyplot as plt

    from unlearnlib.audit.probes import forget_facts
    from unlearnlib.audit.recall import STATISTICS
    from unlearnlib.audit.run import FAMILIES, check_families, run_audit
    from unlearnlib.audit.seed_card import SEED_CARD_FILE, seed_card_summary
    from unlearnlib.display import format_number
    from unlearnlib.evaluation.eval_logs import SUMMARY_FILENAME
    from unlearnlib.models.loading import check_model_folder, load_for_profile
    from unlearnlib.profiles import AuditSettings, get_profile
    from unlearnlib.train.zoo import load_zoo_model

    # Bad input fails here, before the zoo models load (a tiny one may first have to train).
    folder = Path(args.model)
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
    summary = Path(args.summary) if args.summary else folder / SUMMARY_FILENAME
    if args.summary and not summary.is_file():
        raise FileNotFoundError(f"--summary {summary} does not exist: pass the audited "
                                f"model's {SUMMARY_FILENAME} (`unlearnlib eval run --out`).")
    check_model_folder(folder)

    profile = get_profile(args.profile)
    models = {role: load_zoo_model(profile, role) for role in ("full", "retain")}
    models[name] = load_for_profile(folder, profile)
    result = run_audit(models, profile, families=families, out_dir=args.out, **options)
    paths = result.paths
    figure = result.plot().figure
    paths["figure"] = Path(args.out) / "leak_rates.png"
    figure.savefig(paths["figure"], dpi=120, bbox_inches="tight")
    plt.close(figure)
    for statistic in STATISTICS:
        print(f"{statistic} (95 % intervals in {paths['table'].name}):")
        print(result.estimates(statistic).to_string(float_format=format_number) + "\n")
    print(result.membership.to_string(index=False, float_format=format_number))
    summaries = {name: json.loads(summary.read_text())} if summary.is_file() else {}
    card = seed_card_summary(result.records, models,
                             forget_facts(profile.forget_split, profile.data_source), summaries,
                             batch_size=options.get("batch_size") or profile.eval_batch_size)
    paths["seed_card"] = Path(args.out) / SEED_CARD_FILE
    card.to_csv(paths["seed_card"])
    print(f"\nThe seed card beside this audit (definitions: seed_card.view_definitions(); "
          f"forget quality and utility from {SUMMARY_FILENAME}):")
    print(card.to_string(float_format=format_number, na_rep="-") + "\n")
    print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _sweep_run(args: argparse.Namespace) -> int:
    from unlearnlib.course.sweep import parse_shard, run_sweep

    extra = {key: parse_parameter(value) for key, value in args.parameter}
    runs = run_sweep(args.grid, args.profile, args.out, jobs=args.jobs,
                     shard=parse_shard(args.shard), extra=extra,
                     **({"template": args.template} if args.template else {}))
    return 1 if any(run.status == "failed" for run in runs) else 0


def _sweep_report(args: argparse.Namespace) -> int:
    from unlearnlib.course.sweep import sweep_report

    report = sweep_report(args.runs, grid_size=args.grid_size, prune=args.prune)
    print(report.table.to_string(index=False))
    print(f"rank 1: {report.best}\nwrote {', '.join(str(p) for p in report.paths.values())}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from unlearnlib.course.card import write_card

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


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one `unlearnlib: error:` line, like every other error."""

    def error(self, message: str) -> NoReturn:
        """Print the one-line error and exit with status 2 (argparse's own prints the usage)."""
        self.exit(2, f"unlearnlib: error: {message} (see `{self.prog} --help`)\n")


def _add_data_command(commands: argparse._SubParsersAction) -> None:
    """The `data` subcommands."""
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


def _add_eval_command(commands: argparse._SubParsersAction) -> None:
    """The `eval` subcommands."""
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


def _add_course_command(commands: argparse._SubParsersAction) -> None:
    """The `course` subcommands."""
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
    course_run.add_argument("--notebooks", default=None, metavar="DIR",
                            help="the course's notebooks/ folder (default: the checkout's, "
                                 "else ./notebooks); a plain pip install has none: clone the "
                                 "repository or download its notebooks/")
    course_run.add_argument("--strip", action="store_true",
                            help="drop volatile metadata (timings, paths), as golden notebooks do")
    course_run.set_defaults(handler=_course_run)


def _add_models_command(commands: argparse._SubParsersAction) -> None:
    """The `models` subcommands."""
    models = commands.add_parser("models", help="the models to unlearn from").add_subparsers(
        dest="models_command", required=True)
    build = models.add_parser("build", help="the tiny full and retain models: shipped, cached, "
                                            "or trained (base first)")
    build.add_argument("--profile", default="tiny")
    build.add_argument("--from-scratch", action="store_true",
                       help="train them on this machine even where shipped ones fit, and say "
                            "whether the weights equal the shipped ones")
    build.set_defaults(handler=_models_build)
    ship = models.add_parser("ship", help="maintainers: train the tiny models from scratch and "
                                          "ship them in the package (weights and manifest)")
    ship.add_argument("--out", default=None, help="folder (default: the package's own)")
    ship.set_defaults(handler=_models_ship)
    standin = models.add_parser(
        "standin", help="write a randomly initialised Llama-3.2-1B stand-in with the real "
                        "Llama-3 tokenizer (needs the rehearsal extra)")
    standin.add_argument("--size", required=True, choices=["1b", "small"],
                         help="1b: Llama-3.2-1B's exact config; small: CPU-sized layers")
    standin.add_argument("--out", required=True, help="folder for the save_pretrained files")
    standin.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    standin.set_defaults(handler=_models_standin)


def _add_unlearn_command(commands: argparse._SubParsersAction) -> None:
    """The `unlearn` subcommand."""
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
                         help="checkpoint every N steps into OUT/checkpoints (default: every "
                              "epoch; 0: none); the newest two are kept")
    unlearn.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                         help="default: rerunning the same command resumes from its newest "
                              "complete checkpoint (so an interrupted run continues where it "
                              "stopped) and refuses one made with other settings; --resume: "
                              "continue whatever OUT/checkpoints holds; --no-resume: delete "
                              "its checkpoints and start from step 0")
    unlearn.add_argument("--adapter-only", action="store_true",
                         help="under LoRA, save only the adapter instead of a merged model")
    unlearn.set_defaults(handler=_unlearn)


def _add_audit_command(commands: argparse._SubParsersAction) -> None:
    """The `audit` subcommand."""
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
    audit.add_argument("--summary", default=None,
                       help="the audited model's TOFU_SUMMARY.json, for forget quality and "
                            "utility in the seed-card table (default: the one in --model, "
                            "if any)")
    audit.set_defaults(handler=_audit)


def _add_sweep_command(commands: argparse._SubParsersAction) -> None:
    """The `sweep` subcommands."""
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
    sweep_run.add_argument("--template", default=None, metavar="NOTEBOOK",
                           help="each point's notebook (default: the packaged "
                                "sweep_point.ipynb); it must write a complete results.json")
    sweep_run.set_defaults(handler=_sweep_run)
    sweep_rep = sweep.add_parser("report", help="rank the points, heatmap, keep rank 1")
    sweep_rep.add_argument("runs", help="the sweep's --out folder")
    sweep_rep.add_argument("--grid-size", type=int, default=None,
                           help="points in the grid (default: the finished ones)")
    sweep_rep.add_argument("--prune", action="store_true",
                           help="delete every checkpoint but the rank-1 point's")
    sweep_rep.set_defaults(handler=_sweep_report)


def _add_card_command(commands: argparse._SubParsersAction) -> None:
    """The `card` subcommand."""
    card = commands.add_parser("card", help="write a sweep point's model card (README.md)")
    card.add_argument("point", help="a point's folder, e.g. runs/npo_lr0.0005_ep4_a1_b0.1")
    card.set_defaults(handler=_card)


def _add_memory_command(commands: argparse._SubParsersAction) -> None:
    """The `memory` subcommand."""
    memory = commands.add_parser(
        "memory", help="GPU memory of each course step for Llama-3.2-1B, from parameter counts")
    memory.add_argument("--profile", default=None, choices=["colab-t4", "gpu-full"],
                        help="one profile (default: both)")
    memory.add_argument("--seq-len", type=int, default=256, help="tokens of a chat")
    memory.add_argument("--answer-len", type=int, default=64, help="tokens of its answer")
    memory.add_argument("--markdown", action="store_true", help="markdown tables (README)")
    memory.set_defaults(handler=_memory)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand sets `handler`."""
    parser = _Parser(prog="unlearnlib", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_data_command(commands)
    _add_eval_command(commands)
    _add_course_command(commands)
    _add_models_command(commands)
    _add_unlearn_command(commands)
    _add_audit_command(commands)
    _add_sweep_command(commands)
    _add_card_command(commands)
    _add_memory_command(commands)
    return parser


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (a KeyError's without the quotes str() adds)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(text).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line to stderr and exit with status 2.

    Ctrl-C prints `unlearnlib: interrupted` with what was kept and how to go on (status 130).
    Errors that are not the user's (bugs) keep their traceback.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed by `_Parser`
        return exit_.code if isinstance(exit_.code, int) else 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:  # e.g. `unlearnlib memory | head`: the reader has what it wanted
        sys.stdout = None  # nothing more can be written, not even the interpreter's flush
        return 0
    except KeyboardInterrupt as interrupt:
        # The notebook client's abandoned tasks would log their tracebacks at exit.
        logging.getLogger("asyncio").disabled = True
        note = _one_line(interrupt) if str(interrupt) else "run the same command to start over"
        print(f"unlearnlib: interrupted: {note}", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError) as error:
        # OSError: a missing or unreadable file or folder, a Hub model that is gated or
        # unreachable (`loading._explain_load_error`), a bad $UNLEARNLIB_HOME.
        print(f"unlearnlib: error: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
