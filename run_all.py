#!/usr/bin/env python
"""Semi-supervised defect segmentation benchmark: one command line for every task.

    run_all.py train --dataset neu --ratio 0.1 --method supervised --seed 0 --profile quick
    run_all.py eval --run-dir results/runs/quick/neu/0.1/supervised/seed0 --split test
    run_all.py benchmark --profile quick
    run_all.py status --profile quick    (how far the grid is: completed, running, interrupted, failed, pending)
    run_all.py report --results-dir results    (tables, figures and results/report/index.md)
    run_all.py publish --results-dir scratch --to results/reference/study    (completed runs, no checkpoints)
    run_all.py compare RUNS/<profile>/neu/0.01/uaps OTHER/<profile>/neu/0.01/uaps    (paired, seed by seed)
    run_all.py uncertainty --run-dir results/runs/quick/neu/0.1/uaps/seed0    (also: similarity, predictions)
    run_all.py write-folder --dataset synthetic --out data/synthetic_parts    (a dataset as a folder of your own: docs/your_data.md)
    run_all.py predict --results-dir results --dataset folder --images NEW_IMAGES --out predictions    (masks, overlays, areas)
    run_all.py export --run-dir results/runs/quick/neu/0.1/uaps/seed0 --out model.onnx    (ONNX + its preprocessing)

A user error (bad option, missing or corrupt data or results, a run folder of another
configuration, a run another process trains) and a filesystem error (read-only, not a folder,
no space left, permission denied: the path and the cause) are one line on stderr and exit status
2; --debug shows its traceback instead. A failed run exits 1; a grid that left runs to locks of
hosts it cannot check exits 3; Ctrl-C exits 130 with one line (rerun the command to resume).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from defectseg.benchmarks.reporting.aggregate import collect_runs, format_summary, summarize
from defectseg.benchmarks.engine.io import ResultsError
from defectseg.benchmarks.engine.config import load_profile, resolve_run
from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.environment import resolve_device
from defectseg.benchmarks.engine.folders import describe_os_error, require_folder, writable_folder
from defectseg.benchmarks.engine.run import RunConfig, Workspace
from defectseg.benchmarks.engine.run_state import completed_run
from defectseg.benchmarks.grid.execute import check_backend, expand_grid, run_grid
from defectseg.benchmarks.engine.runner import evaluate_checkpoint, train_run
from defectseg.benchmarks.engine.trainer import NonFiniteLossError
from defectseg.datasets import DATASETS
from defectseg.datasets.base import DATA_ROOT_ENV, DatasetError, resolve_data_root
from defectseg.methods import ConfigError, PluginError, available_methods, load_entry_point_plugins, load_plugin

if TYPE_CHECKING:  # reporting is imported on use: it needs matplotlib
    from defectseg.benchmarks.reporting.results_view import ResultsView
    from defectseg.benchmarks.reporting.sections import ReportSection


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", type=Path, default=Path("results"), help="where runs/ tables/ figures go (default: results)")
    parser.add_argument(
        "--data-root", type=Path, default=None, help=f"folder holding NEU_data/, MTiles_data/, DAGM_data/ (default: ${DATA_ROOT_ENV} or data/)"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded-array cache (default: <results-dir>/cache)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--plugin", type=Path, action="append", default=[], help="Python file registering extra methods (repeatable)")
    _debug_option(parser)


def _debug_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")


def _profile_options(parser: argparse.ArgumentParser, default_profile: str) -> None:
    parser.add_argument(
        "--profile", default=default_profile, help=f"profile name in benchmarks/configs/ or a YAML path (default: {default_profile})"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override any profile value, e.g. --set train.iterations=200 --set method_options.uaps.aux_decoders=2 (repeatable)",
    )


def _output_options(parser: argparse.ArgumentParser, default_subdir: str) -> None:
    parser.add_argument("--results-dir", type=Path, default=Path("results"), help="folder holding runs/<profile>/... (default: results)")
    _profiles_filter(parser)
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: <results-dir>/{default_subdir})")
    parser.add_argument(
        "--baseline", dest="baselines", action="extend", nargs="+", default=[], metavar="METHOD",
        help=(
            "also test every method against METHOD: paired difference, 95%% CI, P(improvement) "
            "(repeatable; supervised is always one; main tables and figures mark against the first METHOD given, else supervised)"
        ),
    )
    parser.set_defaults(plugin=[])
    _debug_option(parser)


def _profiles_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", dest="profiles", action="extend", nargs="+", default=None, metavar="P",
        help="only these profiles (repeatable; default: every profile under <results-dir>/runs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train and test one run")
    _common(train)
    _profile_options(train, "quick")
    train.add_argument("--dataset", required=True, help=f"one of {sorted(DATASETS)}")
    train.add_argument("--ratio", type=float, required=True, help="labelled fraction of the training images, e.g. 0.1")
    train.add_argument("--method", required=True, help="registered method name (see 'run_all.py list')")
    train.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")

    evaluate = sub.add_parser("eval", help="evaluate a run's best checkpoint on a split")
    _common(evaluate)
    evaluate.add_argument("--run-dir", type=Path, required=True, help="a run directory written by 'train' or 'benchmark'")
    evaluate.add_argument("--split", choices=["val", "test"], default="test", help="which split (default: test)")

    bench = sub.add_parser("benchmark", help="run a profile's grid of methods x datasets x ratios x seeds")
    _common(bench)
    _profile_options(bench, "quick")
    bench.add_argument(
        "--methods", nargs="+", help="override the profile's methods ('all': every registered one; the profile's method_variants by name)"
    )
    bench.add_argument("--datasets", nargs="+", help="override the profile's datasets ('available': all found)")
    bench.add_argument("--ratios", nargs="+", type=float, help="override the profile's labelled ratios")
    bench.add_argument("--seeds", nargs="+", type=int, help="override the profile's seeds")
    bench.add_argument(
        "--jobs", type=int, default=None,
        help="runs at a time (default: 1 on CPU, one per GPU on CUDA, capped there); each run gets cores // jobs CPU threads",
    )
    bench.add_argument(
        "--backend", choices=["local", "dask"], default="local",
        help="local: joblib worker processes here; dask: the Dask cluster at --scheduler (default: local)",
    )
    bench.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --backend dask)")

    for name, what, default in (
        ("tables", "CSV/Markdown/LaTeX tables", "tables"),
        ("plots", "figures (PNG + PDF)", "figures"),
        ("report", "the report (index.md, index.html) with fresh tables and figures", "report"),
    ):
        output = sub.add_parser(name, help=f"write {what} from the runs on disk")
        _output_options(output, default)
    report = sub.choices["report"]
    report.add_argument("--tables-dir", type=Path, default=None, help="where the report writes its tables (default: <results-dir>/tables)")
    report.add_argument("--figures-dir", type=Path, default=None, help="where the report writes its figures (default: <results-dir>/figures)")

    for name, what in (
        ("similarity", "each member network's/decoder's B x B similarity maps on test images"),
        ("uncertainty", "image, ground truth, prediction, error and uncertainty maps of test images"),
        ("predictions", "a grid of test images, ground truth and predictions"),
    ):
        picture = sub.add_parser(name, help=f"picture of a trained run: {what} (PNG + PDF)")
        _common(picture)
        picture.add_argument("--run-dir", type=Path, required=True, help="a run directory written by 'train' or 'benchmark'")
        picture.add_argument("--out", type=Path, default=None, help=f"output path without suffix (default: <run-dir>/figures/{name})")
    sub.choices["similarity"].add_argument("--num-images", type=int, default=8, help="test images in the batch (default: 8)")
    sub.choices["predictions"].add_argument("--num-images", type=int, default=8, help="test images shown (default: 8)")
    sub.choices["uncertainty"].add_argument(
        "--images", nargs="+", default=["worst"], metavar="worst|IDX", help="'worst' or test-image indices (default: worst)"
    )
    sub.choices["uncertainty"].add_argument("--num-images", type=int, default=4, help="how many worst images by per-image IoU (default: 4)")

    status = sub.add_parser("status", help="how far a profile's grid is (reads only: trains and writes nothing)")
    _common(status)
    _profile_options(status, "quick")

    publish = sub.add_parser(
        "publish", help="copy completed runs (no checkpoints) into another results folder, e.g. one committed to git"
    )
    publish.add_argument("--results-dir", type=Path, default=Path("results"), help="folder holding runs/ (default: results)")
    publish.add_argument("--to", type=Path, required=True, help="the results folder to copy into, e.g. results/reference/<study>")
    _profiles_filter(publish)
    publish.set_defaults(plugin=[])
    _debug_option(publish)

    comparison = sub.add_parser(
        "compare", help="paired comparison, seed by seed, of two method folders' runs (any profiles or results trees)"
    )
    comparison.add_argument("method_dir", type=Path, help="a method folder holding seed<k>/ runs, e.g. results/runs/<profile>/neu/0.01/uaps")
    comparison.add_argument("baseline_dir", type=Path, help="the method folder it is compared with (difference: method - baseline)")
    comparison.set_defaults(plugin=[])
    _debug_option(comparison)

    folder = sub.add_parser("write-folder", help="write a dataset out as a folder dataset (images, masks, dataset.yaml; docs/your_data.md)")
    folder.add_argument("--dataset", default="synthetic", help="the dataset to write (default: synthetic)")
    folder.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a dataset option (value parsed as YAML), e.g. --option num_images=300 (repeatable)")
    folder.add_argument("--out", type=Path, required=True, help="the folder to create (new or empty)")
    folder.add_argument("--unlabelled-fraction", type=float, default=0.5, help="share of the images written without masks (default: 0.5)")
    folder.add_argument("--test-fraction", type=float, default=0.0, help="share written as a test part (default: 0: drawn when loaded)")
    folder.add_argument("--seed", type=int, default=0, help="seed of the shuffle that assigns images to parts (default: 0)")
    folder.add_argument("--data-root", type=Path, default=None, help=f"data root of --dataset (default: ${DATA_ROOT_ENV} or data/)")
    folder.set_defaults(plugin=[])
    _debug_option(folder)

    for name, what in (("predict", "apply a trained run to a folder of new images: masks, overlays, areas.csv"),
                       ("export", "write a trained run's network as ONNX, with its classes and preprocessing beside it")):
        deploy = sub.add_parser(name, help=what)
        deploy.add_argument("--run-dir", type=Path, default=None, help="the run to apply (else the best run of --dataset in --results-dir)")
        deploy.add_argument("--results-dir", type=Path, default=Path("results"), help="where to look for the best run (default: results)")
        deploy.add_argument("--dataset", default=None, help="take the run with the best mean test mIoU of this dataset (docs/your_data.md)")
        _profiles_filter(deploy)
        deploy.add_argument("--data-root", type=Path, default=None, help=f"data root of the run's dataset (default: ${DATA_ROOT_ENV} or data/)")
        deploy.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
        deploy.add_argument("--plugin", type=Path, action="append", default=[], help="Python file registering the run's method (repeatable)")
        _debug_option(deploy)
    sub.choices["predict"].add_argument("--images", type=Path, required=True, help="folder of images (any size; grey or colour)")
    sub.choices["predict"].add_argument("--out", type=Path, required=True, help="output folder: masks/, overlays/, areas.csv")
    sub.choices["predict"].add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    sub.choices["export"].add_argument("--out", type=Path, required=True, help="the ONNX file to write (its .json description goes beside it)")

    listing = sub.add_parser("list", help="list registered methods, datasets and profiles")
    _common(listing)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        load_entry_point_plugins()
        for plugin in args.plugin:
            load_plugin(plugin)
        if hasattr(args, "device"):
            resolve_device(args.device)  # a ConfigError before anything starts
        _check_folder_options(args)
        return COMMANDS[args.command](args)
    except (ConfigError, PluginError, ResultsError, DatasetError) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # read-only, not a folder, no space left, permission denied, ...
        if args.debug:
            raise
        print(f"error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        if args.debug:
            raise
        print(f"error: the run failed: {error} (failure.json in its run folder)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted: runs keep their last checkpoint; run the same command again to resume", file=sys.stderr)
        return 130


FOLDER_OPTIONS = {"results_dir": "--results-dir", "cache_dir": "--cache-dir", "to": "--to", "tables_dir": "--tables-dir",
                  "figures_dir": "--figures-dir"}
OUTPUT_FOLDER_COMMANDS = ("tables", "plots", "report")  # whose --out is a folder


def _check_folder_options(args: argparse.Namespace) -> None:
    """A ConfigError naming the option if one of the command's folders is a file (or lies below one)."""
    options = {**FOLDER_OPTIONS, **({"out": "--out"} if args.command in OUTPUT_FOLDER_COMMANDS else {})}
    for attribute, option in options.items():
        require_folder(getattr(args, attribute, None), option)


def cmd_train(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile, args.overrides)
    run, workspace = RunConfig(resolve_run(profile, args.dataset, args.ratio, args.method, args.seed)), _workspace(args)
    if completed_run(workspace.run_dir(run), run.hash) is None:
        writable_folder(args.results_dir, "--results-dir")
    metrics = train_run(run, workspace)
    print(f"results: {workspace.run_dir(run)}")
    print(json.dumps({k: metrics[k] for k in ("standard", "paper")}, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    metrics = evaluate_checkpoint(args.run_dir, args.split, _workspace(args))
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    check_backend(args.backend, args.scheduler)
    if args.scheduler is not None:
        from defectseg.benchmarks.grid.dask_cluster import check_address

        check_address(args.scheduler)
    profile = load_profile(args.profile, args.overrides)
    writable_folder(args.results_dir, "--results-dir")
    runs = expand_grid(profile, args.data_root, args.methods, args.datasets, args.ratios, args.seeds)
    print(f"profile {profile['profile']}: {len(runs)} runs; data root {resolve_data_root(args.data_root).resolve()}")
    result = run_grid(
        runs, _workspace(args), jobs=args.jobs, backend=args.backend, scheduler=args.scheduler, plugins=args.plugin,
    )
    try:
        print(format_summary(summarize(collect_runs(args.results_dir, profile["profile"]))))
    except ResultsError as error:  # the runs' outcomes below still matter
        print(f"note: no summary table: {error}", file=sys.stderr)
    print(", ".join(f"{count} {status}" for status, count in result.counts().items()))
    print(f"results written under {layout.profile_dir(args.results_dir, profile['profile']).resolve()} (summary.json lists every run)")
    if result.skipped_unreachable:
        print(f"{len(result.skipped_unreachable)} run(s) held by locks of hosts that cannot be checked from here "
              "(gone, or training them: run this again later):", file=sys.stderr)
        for run_config, holder in result.skipped_unreachable:
            print(f"  {layout.run_dir(args.results_dir, run_config)}: {holder}", file=sys.stderr)
    if result.failed:
        print(f"{len(result.failed)} run(s) failed:", file=sys.stderr)
        for run_config, reason in result.failed:
            print(f"  {layout.run_dir(args.results_dir, run_config)}: {reason}", file=sys.stderr)
        return 1
    return 3 if result.skipped_unreachable else 0


def cmd_status(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.grid.status import format_status, grid_status, other_profiles_paces

    profile = load_profile(args.profile, args.overrides)
    runs = expand_grid(profile, args.data_root)
    other_paces = other_profiles_paces(args.results_dir, profile["profile"])
    print("\n".join(format_status(profile["profile"], grid_status(runs, args.results_dir), other_paces)))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.grid.publish import publish

    outcome = publish(args.results_dir, args.to, args.profiles)
    for label in outcome.copied:
        print(f"published {label}")
    print(f"{len(outcome.copied)} run(s) copied into {layout.runs_root(args.to)}, {len(outcome.already_there)} already there")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.reporting.statistics import MIN_UNITS, compare_run_folders
    from defectseg.benchmarks.reporting.table_format import interval, number, signed

    rows = compare_run_folders(args.method_dir, args.baseline_dir)
    for name, folder in (("method", args.method_dir), ("baseline", args.baseline_dir)):
        print(f"{name + ':':<9} {folder} (seeds {', '.join(str(s) for s in rows.iloc[0][name + '_by_seed'])})")
    for row in rows.itertuples():
        print(f"\n{row.protocol} protocol, mIoU (%) per seed:")
        for name in ("method", "baseline"):
            by_seed = getattr(row, name + "_by_seed")
            print(f"  {name:<9} " + "  ".join(f"s{s} {number(v)}" for s, v in by_seed.items())
                  + f"  mean {number(sum(by_seed.values()) / len(by_seed))}")
        if row.note:
            print(f"  difference: not tested ({row.note}: {row.units} paired unit(s), {MIN_UNITS} needed)")
        else:
            print(f"  difference (method - baseline, {row.units} paired units): {signed(row.diff)} "
                  f"{interval(row.diff_ci_low, row.diff_ci_high, sign=True)} {row.mark}  p {number(row.p_value, 4)}  "
                  f"detectable {number(row.mde)}  P(improvement) {number(row.p_improvement)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.engine.config import CONFIG_DIR
    from defectseg.datasets import available_datasets

    print("methods:  ", " ".join(available_methods()))
    found = " ".join(available_datasets(args.data_root))
    print("datasets: ", " ".join(sorted(DATASETS)), f"(found under {resolve_data_root(args.data_root)}: {found})")
    print("profiles: ", " ".join(sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))))
    return 0


def _print_outputs(results_dir: Path, written: dict[str, list[Path]], notes: list[str]) -> int:
    for note in notes:
        print(f"note: {note}")
    for profile, paths in written.items():
        print(f"profile {profile}: {len(paths)} file(s) in {paths[0].parent if paths else '-'}")
    if not written:
        print(f"error: nothing written: no completed runs under {results_dir / 'runs'}", file=sys.stderr)
        return 1
    return 0


def _results_view(args: argparse.Namespace) -> ResultsView:
    """The one view of the results folder that a tables, plots or report command reads."""
    from defectseg.benchmarks.reporting.results_view import ResultsView

    layout.require_profiles(args.results_dir, args.profiles)
    return ResultsView(args.results_dir, args.profiles, args.baselines)


def _report_sections() -> list[ReportSection]:
    """The study sections every table, figure and report command adds to the generic ones: the UAPS paper's."""
    from defectseg.benchmarks.uaps_paper.section import UapsPaperSection

    return [UapsPaperSection()]


def cmd_tables(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.reporting.tables import write_tables

    view = _results_view(args)
    built, notes = write_tables(view, args.out or layout.tables_dir(args.results_dir), _report_sections())
    return _print_outputs(args.results_dir, {profile: tables.files for profile, tables in built.items()}, notes)


def cmd_plots(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.reporting.plots import write_figures

    view = _results_view(args)
    return _print_outputs(args.results_dir, *write_figures(view, args.out or layout.figures_dir(args.results_dir), _report_sections()))


def cmd_report(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.reporting.report import write_report

    view = _results_view(args)
    if view.runs.empty:
        return _print_outputs(args.results_dir, {}, [])
    out = args.out or layout.report_dir(args.results_dir)
    pages, notes = write_report(view, out, _report_sections(), args.tables_dir, args.figures_dir)
    for note in notes:
        print(f"note: {note}")
    print(f"report: {pages[0]} and {pages[1]}")
    return 0


def cmd_picture(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.engine.pictures import draw_figure

    paths = draw_figure(args.command, args.run_dir, _workspace(args), args.out, args.num_images, getattr(args, "images", None))
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_write_folder(args: argparse.Namespace) -> int:
    import yaml

    from defectseg.datasets import get_dataset
    from defectseg.datasets.write_folder import write_folder

    options = {}
    for option in args.options:
        key, equals, value = option.partition("=")
        if not equals:
            raise ConfigError(f"--option {option!r} must look like key=value")
        options[key.strip()] = yaml.safe_load(value)
    dataset = get_dataset(args.dataset, args.data_root, **options)
    counts = write_folder(dataset, args.out, args.unlabelled_fraction, args.test_fraction, args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{count} {part}" for part, count in counts.items()) + " image(s), and dataset.yaml")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.deploy.network import load_network
    from defectseg.benchmarks.deploy.predict import predict_folder
    from defectseg.datasets.custom import IMAGE_SUFFIXES

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    network = load_network(_deployed_run(args), args.data_root, args.device, channels_last=True)
    print(f"predicting with {network.describe()}")
    outcome = predict_folder(network, args.images, args.out, args.batch_size)
    for path in outcome.ignored:
        print(f"note: {path} has no image suffix ({', '.join(IMAGE_SUFFIXES)}): left out", file=sys.stderr)
    print(f"{len(outcome.predicted)} image(s) predicted into {args.out} (masks/, overlays/, areas.csv)")
    for message in outcome.unreadable:
        print(f"error: {message}: skipped", file=sys.stderr)
    if outcome.unreadable:
        print(f"error: {len(outcome.unreadable)} image(s) could not be read (above)", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from defectseg.benchmarks.deploy.network import load_network
    from defectseg.benchmarks.deploy.onnx_export import export_onnx

    network = load_network(_deployed_run(args), args.data_root, args.device)
    for path in export_onnx(network, args.out):
        print(f"wrote {path}")
    return 0


def _deployed_run(args: argparse.Namespace) -> Path:
    """``--run-dir``, or the best run of ``--dataset`` in ``--results-dir`` (said on stdout)."""
    from defectseg.benchmarks.deploy.choose import best_run

    if args.run_dir is not None:
        return args.run_dir
    if args.dataset is None:
        raise ConfigError(f"{args.command} needs --run-dir, or --dataset to take the best run of that dataset in --results-dir")
    choice = best_run(args.results_dir, args.dataset, args.profiles)
    print(f"run: {choice.reason}: {choice.run_dir}")
    return choice.run_dir


def _workspace(args: argparse.Namespace) -> Workspace:
    """The results folder, data root, cache (default: ``<results-dir>/cache``) and device of the command line."""
    return Workspace(args.results_dir, args.data_root, args.cache_dir or layout.cache_dir(args.results_dir), args.device)


COMMANDS = {
    "train": cmd_train, "eval": cmd_eval, "benchmark": cmd_benchmark, "status": cmd_status, "publish": cmd_publish,
    "compare": cmd_compare, "list": cmd_list,
    "tables": cmd_tables, "plots": cmd_plots, "report": cmd_report,
    "similarity": cmd_picture, "uncertainty": cmd_picture, "predictions": cmd_picture,
    "write-folder": cmd_write_folder, "predict": cmd_predict, "export": cmd_export,
}

if __name__ == "__main__":
    sys.exit(main())
