"""Command line: a thin layer over the Python API.

Exit status: 0 on success; 2 for a bad study file, option, data file, storage or output
path (one line on stderr, ``error: FILE: KEY: problem`` or ``error: STORAGE: problem``,
nothing written); 1 when configurations failed, or a study was never run; 130 after
Ctrl-C and 143 after SIGTERM, with the same one-line message. A password in a storage
URL is masked as ``***`` in everything printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from search import interrupt
from search.study.parse import load_spec
from search.study.spec import StudySpec
from search.study.validation import SpecError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, as for a bad study file
        print(f"error: command line: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="actreg",
        description="Measure, over many seeds, whether activity regularization helps a Keras network generalize.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run or resume a study", description=(
        "Run every configuration of STUDY.toml over its seeds and store one Optuna trial per "
        "configuration (with [race], one per block of replicates, until each configuration's verdict "
        "is known). Re-running the same command resumes: stored configurations are skipped. "
        "Any number of runs of the same study (on machines sharing its storage) split the work."))
    run.add_argument("study", metavar="STUDY.toml")
    run.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: the file's, else sqlite beside it)")
    run.add_argument("--n-jobs", type=int, metavar="N", help="worker processes (default: the file's, else all cores)")
    run.add_argument("--seeds", type=int, metavar="N", help="use seeds 0..N-1 instead of the file's")
    run.add_argument("--epochs", type=int, metavar="N", help="train N epochs instead of the file's")
    run.add_argument("--scheduler", metavar="ADDRESS", help=(
        "run the fits on the Dask cluster behind this scheduler (tcp://HOST:8786); this process claims "
        "configurations and stores results (default: the file's, else local worker processes)"))
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bar (and no progress line every 15 s where stderr is no terminal)")
    run.add_argument("--no-wait", action="store_true",
                     help="when nothing is left to claim, exit at once instead of waiting for the configurations "
                          "that other runners are fitting")

    export = sub.add_parser("export", help="write the study's results as CSV", description=(
        "Write one row per configuration (or per configuration and seed) with the columns "
        "documented in docs/columns.md."))
    export.add_argument("study", metavar="STUDY.toml")
    export.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the CSV")
    export.add_argument("--per-seed", action="store_true", help="one row per configuration and seed")
    export.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: as for run)")

    dash = sub.add_parser("dashboard", help="browse the study in optuna-dashboard", description=(
        "Serve the study's storage with optuna-dashboard and print its URL; Ctrl-C stops it."))
    dash.add_argument("study", metavar="STUDY.toml")
    dash.add_argument("--port", type=int, default=8080, metavar="P", help="port (default 8080)")
    dash.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to bind (default 127.0.0.1)")
    dash.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: as for run)")

    report = sub.add_parser("report", help="tables, heatmaps, learning curves and statistics", description=(
        "Write summary tables (CSV, Markdown, LaTeX), heatmaps, learning curves, seed distributions, "
        "sparsity plots, paired statistics against the baseline and a one-page report.md; attach the "
        "figures and a summary note to the study for optuna-dashboard."))
    report.add_argument("study", metavar="STUDY.toml")
    report.add_argument("--out", metavar="DIR", help=(
        "output folder (default: reports/<study name> beside the study's studies/ folder, else beside the study file)"))
    report.add_argument("--format", default="png", choices=["png", "pdf", "svg"], help="figure format (default png)")
    report.add_argument("--figure-width", default="text", choices=["text", "column"],
                        help="figures for a page's full width, 7 in (text, the default), or one column of two, "
                             "3.3 in (column); text at least 7 pt at that size")
    report.add_argument("--no-attach", action="store_true", help="do not attach figures and note to the study")
    report.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: as for run)")

    bench = sub.add_parser("bench", help="trainer throughput against plain keras model.fit", description=(
        "Train the case-study MLP (or, with --study, a study's model on its data, in its first "
        "regularized configuration) with plain keras model.fit (validation every epoch) and with "
        "actreg's trainer on SEEDS seeds, and print microseconds per epoch per model for each."))
    bench.add_argument("--study", metavar="STUDY.toml", help="benchmark this study's data, model and training settings")
    bench.add_argument("--epochs", type=int, metavar="E",
                       help="epochs for actreg's trainer (default 2000, or the study's)")
    bench.add_argument("--seeds", type=int, metavar="S",
                       help="seeds, in chunks of at most 32 as a study trains them (default 30, or the study's)")
    bench.add_argument("--fit-epochs", type=int, default=20, metavar="E",
                       help="epochs for keras model.fit (default 20; an epoch of the case-study MLP costs 0.06-0.1 s "
                            "on 2 cores, one of digits-cnn 0.15-0.3 s)")
    bench.add_argument("--repeats", type=int, default=3, metavar="N",
                       help="timed passes of actreg's trainer after the compiling one; the best counts (default 3)")
    bench.add_argument("--record-every", type=int, metavar="K",
                       help="evaluate the test rows every K epochs and at the last (default: as a study records, "
                            "every epochs/100; 1: every epoch, as model.fit with validation_data)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    with interrupt.handled():  # SIGTERM is handled like Ctrl-C: claims are released, the same message printed
        try:
            status = _COMMANDS[args.command](args)
            interrupt.check()  # an interruption whose exception was swallowed on the way still ends as one
            return status
        except KeyboardInterrupt as exc:
            interrupt.ignore_more()
            print("interrupted; run the same command again to resume", file=sys.stderr)
            return 143 if isinstance(exc, interrupt.Terminated) else 130
        except SpecError as exc:
            return _error(str(exc))
        except Exception as exc:
            from search.engine.cluster import ClusterError
            from search.store.errors import storage_failure
            from search.store.storage import StorageError, describe_error

            if isinstance(exc, (StorageError, ClusterError)):
                return _error(str(exc))
            cause = storage_failure(exc)
            if cause is not None:  # the storage failed after it was opened
                return _error(describe_error(cause, _STORAGE[0] if _STORAGE else ""))
            raise


def run() -> None:
    """The program: :func:`main`, then exit with its status.

    An interruption can leave a fit running on the in-process fitting thread; the interpreter's
    shutdown would then abort the process (see :func:`search.engine.parallel.fit_abandoned`), so
    such a process leaves at once, once its output is flushed. Claims were released before
    :func:`main` returned, and every result is committed: nothing else is left to do.
    """
    status = main()
    parallel = sys.modules.get("search.engine.parallel")
    if parallel is not None and parallel.fit_abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    if parallel is not None:
        parallel.stop_workers()  # nothing is left for them: the program need not wait for their shutdown
    sys.exit(status)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


_STORAGE: list[str] = []  # the storage URL in use, so that late errors can mask its password


def _spec(args: argparse.Namespace, **overrides) -> StudySpec:
    spec = load_spec(args.study)
    spec = spec.with_overrides(storage=getattr(args, "storage", None), **overrides)
    _STORAGE[:] = [spec.storage]
    return spec


def _run(args: argparse.Namespace) -> int:
    from search.run import run_study, summary_text

    spec = _spec(args, n_jobs=args.n_jobs, seeds=args.seeds, epochs=args.epochs, scheduler=args.scheduler)
    report = run_study(spec, progress=False if args.no_progress else None, wait=not args.no_wait)
    print(summary_text(report.summary, spec.objective, comparison=report.comparison,
                       varied=spec.data.variance_sources))
    others = f", {report.configurations_by_others} by other runners" if report.configurations_by_others else ""
    fitted = (f" (fitting {report.training_seconds:.1f} s summed over the processes, XLA's compilation included; "
              f"programs of up to {report.models_per_program} models; peak memory of a fitting process "
              f"{report.peak_memory_mb:,.0f} MB)" if report.fits else "")
    print(f"\n{report.configurations_run} configurations run ({report.configurations_diverged} diverged), "
          f"{report.configurations_failed} failed, {report.configurations_skipped} already stored{others}; "
          f"{report.fits} fits in {report.wall_seconds:.1f} s{fitted}; storage: {report.storage}")
    if report.stopped:
        print(f"error: {report.stopped}", file=sys.stderr)
    elif report.configurations_failed:
        print(f"error: {report.configurations_failed} configuration(s) failed (see their fail_reason in "
              "`actreg dashboard`); run the same command again to retry them", file=sys.stderr)
    return 1 if report.configurations_failed else 0


def _export(args: argparse.Namespace) -> int:
    from search.results.records import stored_frame, write_csv
    from search.results.setting import sidecar_path, stored_setting, write_setting
    from search.store.reading import read_stored
    from search.store.storage import StudyNotFound

    spec = _spec(args)
    _check_output_file(args.out, "--out")
    try:
        stored = read_stored(spec)
    except StudyNotFound as exc:
        return _not_run(args, exc)
    for note in stored.notes:
        print(f"note: {args.study}: {note}", file=sys.stderr)
    frame = stored_frame(stored, args.per_seed)
    sidecar = sidecar_path(args.out)
    existed = os.path.exists(sidecar)
    try:
        write_setting(stored_setting(stored), sidecar)
        try:
            write_csv(frame, args.out)
        except OSError:
            if not existed:  # nothing half-written: no setting without its table
                os.unlink(sidecar)
            raise
    except OSError as exc:
        raise SpecError("command line", "--out", f"cannot write {args.out}: {exc.strerror or exc}") from None
    partial = f" (a partial study: {stored.partial})" if stored.partial else ""
    print(f"wrote {len(frame)} rows to {args.out}{partial}, its setting (penalty convention, epochs, replicates, "
          f"data, versions, fingerprint) to {sidecar}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from search.store.dashboard import serve
    from search.store.storage import StudyNotFound

    if not 0 < args.port < 65536:
        raise SpecError("command line", "--port", "must be between 1 and 65535")
    spec = _spec(args)
    try:
        serve(spec, host=args.host, port=args.port)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise SpecError("command line", "--port", f"cannot serve on {args.host}:{args.port}: "
                                                   f"{exc.strerror or exc}") from None
    except StudyNotFound as exc:
        return _not_run(args, exc)
    return 0


def _check_output_file(path: str, key: str) -> None:
    """Refuse, before anything is read or written, an output file that cannot be written."""
    import os

    if os.path.isdir(path):
        raise SpecError("command line", key,
                        f"{path} is a folder; give a file name such as {path.rstrip('/')}/summary.csv")
    _check_output_folder(os.path.dirname(os.path.abspath(path)), key)


def _check_output_folder(folder: str, key: str) -> None:
    import os

    walk = folder
    while walk and not os.path.exists(walk):
        walk = os.path.dirname(walk)
    if walk and not os.path.isdir(walk):
        raise SpecError("command line", key, f"cannot write under {walk}: it is a file, not a folder")
    if walk and not os.access(walk, os.W_OK):
        raise SpecError("command line", key, f"cannot write into {walk}: permission denied or read-only")


def _not_run(args: argparse.Namespace, exc: Exception) -> int:
    print(f"error: {args.study}: name: {exc}; run `actreg run {args.study}` first", file=sys.stderr)
    return 2  # a storage without the study is bad input, as a bad storage is (1 means a configuration failed)


def _version() -> str:
    from search._version import __version__

    return __version__


def _report(args: argparse.Namespace) -> int:
    from search.results.report import write_report
    from search.store.storage import StudyNotFound

    spec = _spec(args)
    if args.out is not None:
        import os

        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise SpecError("command line", "--out", f"{args.out} is a file; give a folder")
        _check_output_folder(os.path.abspath(args.out), "--out")
    try:
        report = write_report(spec, args.out, fmt=args.format, attach=not args.no_attach, width=args.figure_width)
    except StudyNotFound as exc:
        return _not_run(args, exc)
    except OSError as exc:
        raise SpecError("command line", "--out", f"cannot write the report: {exc.strerror or exc}"
                        f"{f' ({exc.filename})' if exc.filename else ''}") from None
    for note in report.notes:
        print(f"note: {args.study}: {note}", file=sys.stderr)
    partial = f" (a partial study: {report.partial})" if report.partial else ""
    print(f"wrote {len(report.files)} files to {report.folder}{partial}; start with {report.folder / 'report.md'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from search.bench import format_result, measure

    for name in ("epochs", "seeds", "fit_epochs", "repeats", "record_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SpecError("command line", f"--{name.replace('_', '-')}", "must be a positive integer")
    spec = load_spec(args.study) if args.study else None
    result = measure(epochs=args.epochs, seeds=args.seeds, fit_epochs=args.fit_epochs, spec=spec, repeats=args.repeats,
                     record_every=args.record_every)
    print(json.dumps(result.as_dict()) if args.json else format_result(result))
    return 0


_COMMANDS = {"run": _run, "export": _export, "dashboard": _dashboard, "report": _report, "bench": _bench}

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
