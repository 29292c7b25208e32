"""The command line: a thin Click layer over the library.

Each command parses flags, calls one library function, and turns an
``AugcliError`` into ``Error: ...`` with its exit code. Library modules are
imported inside commands so that ``augcli --help`` does not load NumPy,
OpenCV or imgaug.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from pathlib import Path

import click

from . import __version__
from .errors import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, AugcliError, UsageError, output_error
from .exports import EXPORTS


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: stop, keep finished outputs, exit 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


class _Group(click.Group):
    """Turns library errors into a one-line message and an exit code, never a traceback."""

    def invoke(self, ctx):
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
        try:
            return self._invoke(ctx)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AugcliError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except ImportError as exc:
            if "libGL" not in str(exc):
                raise
            click.echo(f"Error: OpenCV cannot load ({exc}). This machine has no libGL: "
                       "keep only the headless OpenCV wheel with\n  pip uninstall -y "
                       "opencv-python opencv-python-headless && pip install "
                       "opencv-python-headless", err=True)
            ctx.exit(EXIT_USAGE)
        except OSError as exc:  # a file-system error no command turned into its own message
            if exc.filename is None:
                raise
            click.echo(f"Error: {output_error(exc.filename, exc)}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt as exc:
            click.echo("Interrupted. Finished outputs are kept; rerun the same command to "
                       "make the rest.", err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)


# Options every folder command shares, written once (as sqlite-utils does).
workers_option = click.option(
    "-w", "--workers", type=click.IntRange(min=1),
    help="Worker processes [default: all cores; 1 runs in-process].")
quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="No progress bar and no summary.")
cluster_option = click.option(
    "--cluster", metavar="local|ADDRESS|FILE",
    help="Run on Dask: 'local' (a cluster of --workers processes here), a scheduler "
         "address (tcp://host:8786) or a scheduler file [default: a local process pool].")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the summary as one JSON object on stdout (docs/running.md).")
annotations_path_option = click.option(
    "--annotations-path", type=click.Path(path_type=str),
    help="Where they are: a folder of per-image files [default: beside the images], "
         "or the COCO JSON file (required for coco).")


class _AnnotationFormats(click.Choice):
    """The registered annotation formats (``augcli.formats``), looked up when a command
    first needs them, so that ``augcli --help`` loads no format module (nor NumPy)."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        from .formats import names

        return names()

    @choices.setter
    def choices(self, value) -> None:
        """``click.Choice.__init__`` sets its choices; these come from the registry."""


def print_summary(report, as_json: bool, quiet: bool, lines=()) -> None:
    """The end of a folder command: one JSON object on stdout for scripts, or the human
    summary (``lines`` first) on stderr unless quiet."""
    if as_json:
        _echo_json(report.to_json())
        return
    if quiet:
        return
    for line in lines:
        click.echo(line, err=True)
    click.echo(report.summary(), err=True)
    if report.ignored:
        click.echo(f"ignored {len(report.ignored)} file(s) that are not images "
                   f"(e.g. {report.ignored[0]})", err=True)


def print_failure(line: str) -> None:
    """Print one failed input above the progress bar, as it happens."""
    from tqdm import tqdm

    tqdm.write(f"failed: {line}", file=sys.stderr)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="augcli")
def main():
    """Turn a folder of images into a bigger, varied training set.

    Write a YAML recipe, then run it:

        augcli run recipe.yaml
    """


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("-i", "--input", "input_dir", type=click.Path(),
              help="Input folder or URL, or a dataset's data.yaml (overrides the recipe's "
                   "'input').")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False),
              help="Output folder or URL (overrides the recipe's 'output').")
@workers_option
@cluster_option
@click.option("--seed", type=click.IntRange(min=0), help="Seed (overrides the recipe's 'seed').")
@click.option("--per-class", type=click.IntRange(min=1),
              help="Top every class folder up to N images, originals included "
                   "(overrides 'target_per_class').")
@click.option("--profile", help="Make every output meet an upload target's limits: "
                                "custom-vision, azureml-automl or generic (overrides 'profile').")
@click.option("--dry-run", is_flag=True,
              help="Print the plan, what is already done and what would be refused; write "
                   "nothing. Exit code as the run would give.")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs of an earlier run, even of a different recipe or seed.")
@quiet_option
@json_option
def run(recipe, input_dir, output_dir, workers, cluster, seed, per_class, profile, dry_run,
        overwrite, quiet, as_json):
    """Augment every image of a folder as RECIPE says.

    Each source image gets suffixed copies in the output folder, in the same
    subfolder: cats/tom.jpg -> cats/tom_noise_1.jpg, cats/tom_rotate_2.jpg.
    A manifest.jsonl beside them records each output's source, seed and
    sampled parameters. Rerunning the same recipe finishes an interrupted run
    and skips what is done. Input and output may be object-store URLs
    (s3://, az://, gs://), and --cluster runs the work on Dask: same bytes.

    A dataset with splits (a data.yaml, or train/valid/test folders) keeps its
    layout: the recipe's splits (default train) are augmented, originals
    included, the other splits are copied unchanged, and a dataset with a
    data.yaml gets one for the output.

    Exit code: 0 all good, 1 some inputs failed, 2 recipe or usage error.

    Example:

        augcli run recipe.yaml --output out --workers 4

        augcli run recipe.yaml --json > summary.json

        augcli run recipe.yaml --dry-run --json > plan.json
    """
    _start_worker_server("augcli.runner", workers, cluster, dry_run)
    from .runner import dry_run as plan_only
    from .runner import run_recipe

    if dry_run:
        plan, done, warnings = plan_only(recipe, input=input_dir, output=output_dir, seed=seed,
                                         per_class=per_class, profile=profile,
                                         overwrite=overwrite)
        code = EXIT_SOME_FAILED if plan.failures else EXIT_OK
        if as_json:
            _echo_json(_plan_json(plan, done, warnings, code))
        else:
            _print_plan(plan, done, warnings)
        sys.exit(code)

    report = run_recipe(recipe, input=input_dir, output=output_dir, seed=seed,
                        per_class=per_class, profile=profile, workers=workers,
                        overwrite=overwrite, cluster=cluster,
                        progress=not quiet, notify=print_failure)
    for line in report.notes:
        click.echo(f"note: {line}", err=True)
    print_summary(report, as_json, quiet, report.class_lines() + report.object_lines())
    sys.exit(report.exit_code)


def _start_worker_server(module: str, workers, cluster, dry_run: bool) -> None:
    """Start the process pool's worker server while this process imports ``module``
    itself, when the command will likely use a pool (see ``executors.start_worker_server``):
    not for one worker, a cluster or a dry run, nor on a single core, where its import
    would only compete with this one."""
    if dry_run or cluster is not None or workers == 1:
        return
    from .executors import default_workers, start_worker_server

    if workers is None and default_workers() == 1:
        return
    start_worker_server(module)


def _echo_json(data) -> None:
    """One JSON object on stdout, for scripts."""
    import json

    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@main.command("ops")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="Print the catalog (or the op NAME) as JSON on stdout, for scripts.")
def list_ops(name, as_json):
    """List every op and combinator with its parameters, or show one in full.

    Combinators (sometimes, one_of, some_of, sequence) hold other ops.

    Example:

        augcli ops            # all ops and combinators, their parameters and defaults

        augcli ops rotate     # one op, with a recipe snippet

        augcli ops one_of     # one combinator, with a recipe snippet

        augcli ops --json     # the catalog for scripts
    """
    from . import ops
    from .ops.combinators import COMBINATORS

    if name is None:
        if as_json:
            _echo_json(ops.catalog_json())
        else:
            click.echo(ops.catalog_listing())
        return
    text = ops.op_help(name)
    if text is not None and as_json:
        catalog = ops.catalog_json()
        found = ops.lookup(name)
        _echo_json(next(entry for entry in catalog["ops"] + catalog["combinators"]
                        if entry["name"] == (found.name if found else name)))
        return
    if text is None:
        from .ops.elsewhere import elsewhere_hint

        close = ops.closest_names(name, [*ops.all_names(), *COMBINATORS])
        elsewhere = elsewhere_hint(name)
        hint = f" ({elsewhere})" if elsewhere else \
            (f" (did you mean '{close[0]}'?)" if close else "")
        raise UsageError(f"no op named '{name}'{hint}; run 'augcli ops' for the list")
    click.echo(text)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help="Print the verdict as one JSON object on stdout: valid, problems, "
                   "warnings.")
def validate(recipe, as_json):
    """Check RECIPE and report every problem, without touching any image.

    Warns (exit code still 0) about a variant that cannot vary: none of its ops
    changes an image, or it makes fewer different images than its copies.
    When the input is a dataset whose labels travel with its images (a
    data.yaml, a COCO file per split), ops the boxes cannot follow are errors,
    as with 'annotations:' in the recipe.

    Exit code: 0 when the recipe is valid, 2 with one line per problem when not.

    Example:

        augcli validate recipe.yaml

        augcli validate recipe.yaml --json
    """
    from .errors import RecipeError
    from .plan import dataset_annotations
    from .recipe import load_recipe
    from .variety import variant_warnings

    try:
        loaded = load_recipe(recipe)
        if isinstance(loaded.input, Path) and loaded.input.exists():
            dataset_annotations(loaded)  # a dataset's labels refuse the ops they cannot follow
    except RecipeError as exc:
        if not as_json:
            raise
        _echo_json({"recipe": recipe, "valid": False, "problems": exc.problems,
                    "exit_code": exc.exit_code})
        sys.exit(exc.exit_code)
    outputs = sum(variant.outputs_per_source for variant in loaded.variants)
    warnings = variant_warnings(loaded)
    if as_json:
        _echo_json({"recipe": recipe, "valid": True, "variants": len(loaded.variants),
                    "outputs_per_source": outputs, "problems": [], "warnings": warnings,
                    "exit_code": EXIT_OK})
        return
    click.echo(f"{recipe}: valid; {len(loaded.variants)} variant(s), {outputs} output(s) "
               "per source image")
    for line in warnings:
        click.echo(f"warning: {line}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.argument("image", type=click.Path(dir_okay=False, path_type=str))
@click.option("--variant", help="Show only this variant [default: all, in turn].")
@click.option("-n", "count", type=click.IntRange(min=1), default=8, show_default=True,
              help="How many samples.")
@click.option("-o", "--output", default="preview.png", show_default=True,
              type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed (overrides the recipe's 'seed').")
def preview(recipe, image, variant, count, output, seed):
    """Draw the first outputs RECIPE makes from IMAGE as one labelled grid.

    The samples are exactly the files 'augcli run' would write for IMAGE
    (same seeds and code), with the original first. Look before you make
    a thousand files.

    Example:

        augcli preview recipe.yaml sample_images/cat/chelsea.jpg -n 11 -o sheet.png
    """
    from .preview import make_preview
    from .runner import resolve_recipe

    written = make_preview(resolve_recipe(recipe, seed=seed), image, variant, count, output)
    click.echo(f"wrote {written}")


def _plan_json(plan, done: int, warnings, exit_code: int) -> dict:
    """``run --dry-run --json``: what ``_print_plan`` shows, as one object."""
    sources = []
    for source in plan.sources:
        per_variant: dict = {}
        for output in plan.outputs_of(source):
            label = output.variant or "original"
            per_variant[label] = per_variant.get(label, 0) + 1
        sources.append({"source": source.relative, "outputs": sum(per_variant.values()),
                        "per_variant": per_variant})
    return {"command": "run", "dry_run": True, "output": str(plan.output_store),
            "dataset": None if plan.dataset is None else plan.dataset.summary(),
            "notes": [] if plan.dataset is None else list(plan.dataset.notes),
            "sources": sources, "total_sources": len(plan.sources),
            "total_outputs": plan.total_outputs, "already_done": done,
            "classes": [{"class": count.tag, "before": count.before, "after": count.after}
                        for count in plan.classes],
            "objects": plan.objects_before(),
            "failures": [{"path": str(path), "reason": reason}
                         for path, reason in plan.failures],
            "warnings": list(warnings), "exit_code": exit_code}


def _print_plan(plan, done=0, warnings=()):
    if plan.dataset is not None:
        click.echo(plan.dataset.summary())
        for line in plan.dataset.notes:
            click.echo(f"note: {line}")
    for source in plan.sources:  # the outputs only: no task (nor its annotation) to build
        outputs = plan.outputs_of(source)
        per_variant = {}
        for output in outputs:
            label = output.variant or "original"
            per_variant[label] = per_variant.get(label, 0) + 1
        detail = ", ".join(f"{name} {count}" for name, count in per_variant.items())
        click.echo(f"{source.relative}: {len(outputs)} outputs ({detail})")
    for count in plan.classes:
        click.echo(f"class {count.tag}: {count.before} -> {count.after}")
    for label, count in plan.objects_before().items():
        click.echo(f"objects {label}: {count} in the sources")
    for path, reason in plan.failures:
        click.echo(f"failed: {path}: {reason}")
    for line in warnings:
        click.echo(f"warning: {line}")
    already = f", {done} already done (a run skips them)" if done else ""
    click.echo(f"total: {len(plan.sources)} sources -> {plan.total_outputs} outputs in "
               f"{plan.output_store}{already} (dry run: nothing written)")


@main.command()
@click.argument("input_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False),
              help="Output folder or URL (not with --fit-only).")
@click.option("-m", "--method", required=True,
              type=click.Choice(["minmax", "samplewise", "featurewise", "zca", "caffe", "tf",
                                 "torch"]),
              help="What to compute (see above).")
@click.option("--format", "fmt", type=click.Choice(["npy", "png"]),
              help="npy: float32 arrays [default]; png: 8-bit pictures [default for minmax].")
@click.option("--size", metavar="WxH",
              help="Resize every image to WIDTHxHEIGHT first, e.g. 64x64 [default: none; "
                   "zca: 32x32, see below].")
@click.option("--resize", type=click.Choice(["stretch", "letterbox"]), default="stretch",
              show_default=True, help="With --size: stretch, or keep the aspect ratio and pad "
                                      "with black.")
@click.option("--color", type=click.Choice(["rgb", "grey"]),
              help="Colour mode, as Keras' color_mode [default: rgb, or the saved statistics'].")
@click.option("--per-channel", is_flag=True, help="minmax: stretch each channel on its own.")
@click.option("--stats", type=click.Path(dir_okay=False),
              help="featurewise/zca: statistics file to apply (or to save with --fit-only).")
@click.option("--fit-only", is_flag=True,
              help="featurewise/zca: compute the statistics, save them to --stats, write "
                   "no image.")
@click.option("--zca-epsilon", type=float, help="zca: epsilon added to the singular values "
                                                "[default: 1e-6, as Keras].")
@click.option("--dry-run", is_flag=True, help="Print what would be written and write nothing.")
@click.option("--overwrite", is_flag=True,
              help="Replace the outputs of an earlier normalize, even with other settings, "
                   "and files no manifest accounts for.")
@workers_option
@cluster_option
@quiet_option
@json_option
def normalize(input_dir, output_dir, method, fmt, size, resize, color, per_channel, stats,
              fit_only, zca_epsilon, dry_run, overwrite, workers, cluster, quiet, as_json):
    """Normalize every image of INPUT_DIR the way Keras does.

    Each image gives one file in the output folder, same subfolder and stem:
    cats/tom.jpg -> cats/tom.npy (float32, H x W x C) or cats/tom.png.

    \b
    minmax       (x - min) / (max - min) * 255 per image (--per-channel)
    samplewise   (x - mean) / (std + 1e-6) per image
    featurewise  (x - mean) / (std + 1e-6), per-channel dataset statistics
    zca          dataset ZCA whitening, as Keras' ImageDataGenerator
    caffe        RGB -> BGR, minus the ImageNet mean
    tf           x / 127.5 - 1
    torch        x / 255, minus the ImageNet mean, over its std

    featurewise and zca fit their statistics on INPUT_DIR, or apply the ones
    saved by --fit-only --stats FILE (so a test set uses the training set's).

    zca resizes to --size (32x32 unless given) and solves an eigenproblem of
    D x D values, D = width x height x channels, once there are at least D
    images (with fewer, only images x images). Its time grows as D cubed:
    seconds at 32x32 RGB (D = 3,072), minutes at 48x48, hours at 96x96.

    The output folder gets a manifest.jsonl (source, output, method, and the
    fingerprints of the settings and statistics). Rerun a killed normalize to
    finish it: done files are skipped. An output folder holding other files
    is refused unless --overwrite.

    INPUT_DIR and the output may be object-store URLs (s3://, az://, gs://;
    --stats stays a local file), and --cluster runs the work on Dask: same bytes.

    Exit code: 0 all good, 1 some inputs failed, 2 usage error.

    Examples:

        augcli normalize photos -o normalized -m featurewise

        augcli normalize train -m zca --fit-only --stats zca.npz

        augcli normalize test -o test_white -m zca --stats zca.npz
    """
    _start_worker_server("augcli.normalize", workers, cluster, dry_run)
    from .normalize import NormalizeSettings, normalize_folder, plan_normalize

    settings = NormalizeSettings.of(input_dir, output_dir, method=method, fmt=fmt, size=size,
                                    resize=resize, color=color, per_channel=per_channel,
                                    zca_epsilon=zca_epsilon, stats=stats, fit_only=fit_only,
                                    overwrite=overwrite)
    if dry_run:
        plan = plan_normalize(settings)
        if as_json:
            _echo_json(_normalize_plan_json(plan))
        else:
            _print_normalize_plan(plan)
        return
    report = normalize_folder(settings, workers=workers, cluster=cluster, progress=not quiet,
                              notify=print_failure)
    print_summary(report, as_json, quiet)
    sys.exit(report.exit_code)


def _normalize_plan_json(plan) -> dict:
    """``normalize --dry-run --json``: what ``_print_normalize_plan`` shows, as one object."""
    images = [{"source": task.relative, "output": plan.outputs.get(task.relative),
               "done": plan.outputs.get(task.relative) in plan.finished}
              for task in plan.tasks]
    todo = sum(image["output"] is not None and not image["done"] for image in images)
    size = plan.preparation.size
    return {"command": "normalize", "dry_run": True, "method": plan.method,
            "format": plan.fmt, "size": list(size) if size else None,
            "output": None if plan.output_store is None else str(plan.output_store),
            "fits": bool(plan.fits), "stats": None if plan.stats_path is None
            else str(plan.stats_path), "images": images, "to_write": todo,
            "already_done": sum(image["done"] for image in images),
            "removed": list(plan.stale), "exit_code": EXIT_OK}


def _print_normalize_plan(plan):
    for task in plan.tasks:
        output = plan.outputs.get(task.relative)
        if output is None:
            click.echo(f"{task.relative}: read to fit the statistics")
        else:
            done = " (done)" if output in plan.finished else ""
            click.echo(f"{task.relative} -> {output}{done}")
    settings = f"{plan.method}, {plan.fmt}"
    if plan.preparation.size:
        settings += f", {plan.preparation.size[0]}x{plan.preparation.size[1]}"
    if plan.fits:
        target = f"saved to {plan.stats_path}" if plan.output_store is None else "applied"
        click.echo(f"fit: {plan.method} statistics over the {len(plan.tasks)} images first, "
                   f"then {target}" + (" (a done file is kept only if the statistics come out "
                                        "the same)" if plan.finished else ""))
    if plan.stale:
        click.echo(f"--overwrite: {len(plan.stale)} file(s) of the earlier run are removed "
                   f"(e.g. {plan.stale[0]})")
    if plan.output_store is not None:
        todo = len(plan.tasks) - sum(output in plan.finished for output in plan.outputs.values())
        click.echo(f"total: {len(plan.tasks)} images ({settings}) -> {todo} files to write, "
                   f"{len(plan.tasks) - todo} already done, in {plan.output_store} "
                   "(dry run: nothing written)")
    else:
        click.echo(f"total: {len(plan.tasks)} images ({settings}) (dry run: nothing written)")


@main.command()
@click.argument("input_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder or URL (outside INPUT_DIR).")
@click.option("-n", "--count", required=True, type=click.IntRange(min=1),
              help="Number of montages to make.")
@click.option("--size", required=True, metavar="WxH",
              help="Montage size, e.g. 224x224; sources are stretched to it first.")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True),
              help="w', h' ~ Beta(beta, beta): small puts boundaries near the edges, large "
                   "near the centre [default: 0.3].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Same seed, same montages (whatever the worker count).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Montages that share one boundary, as in the paper.")
@click.option("--per-sample", is_flag=True, help="Draw a new boundary for every montage.")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png",
              show_default=True, help="Montage file format (jpg at quality 95).")
@click.option("--hard-label", type=click.Choice(["majority"]),
              help="Also write each montage to majority/<class>/, its largest-area class "
                   "(ties: the class first in sorted order).")
@click.option("--epochs", type=click.IntRange(min=1), metavar="E",
              help="Write E folders epoch_000/ ... of --count montages each, one per "
                   "training epoch, each drawn from its own seed.")
@click.option("--beta-schedule", metavar="MIN:MAX:START:END",
              help="With --epochs: beta rises linearly from MIN (up to epoch START) to MAX "
                   "(from epoch END on); epochs count from 0. E.g. 0.01:1.0:20:90.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier ricap run.")
@click.option("--dry-run", is_flag=True,
              help="Plan and count (what is left to make after an interrupted run); "
                   "write nothing.")
@json_option
@workers_option
@cluster_option
@quiet_option
def ricap(input_dir, output_dir, count, size, beta, seed, batch_size, per_sample, fmt,
          hard_label, epochs, beta_schedule, overwrite, dry_run, as_json, workers, cluster,
          quiet):
    """Make RICAP montages with soft labels from the class folders of INPUT_DIR.

    Each montage is cut at a random point (w, h) into four quadrants, each
    filled with a random crop of a random image (Takahashi et al., ACML 2018).
    Its label gives each class the share of the area its crops cover.
    Classes are the subfolders of INPUT_DIR; images directly in it are an
    error.

    \b
    OUTPUT_DIR/ricap_00001.png ...   the montages
    OUTPUT_DIR/labels.csv            filename, then one weight per class
    OUTPUT_DIR/montages.jsonl        boundary, and per quadrant its source,
                                     crop box, output box, class and weight
    OUTPUT_DIR/majority/<class>/     with --hard-label majority
    OUTPUT_DIR/ricap.json            the settings, for resuming
    OUTPUT_DIR/epoch_000/ ...        with --epochs: one such folder per epoch

    Rerunning the same command after an interruption makes only the
    montages still missing; the result is the same as an uninterrupted run.
    INPUT_DIR and OUTPUT_DIR may be object-store URLs (s3://, az://, gs://),
    and --cluster makes the montages on Dask: same bytes.

    Exit code: 0 all good, 1 some sources could not be read (the montages
    that needed them are not made), 2 usage error.

    Example:

        augcli ricap photos -o montages --count 1000 --size 224x224 --seed 1

    \b
        augcli ricap photos -o epochs -n 200 --size 32x32 \\
            --epochs 10 --beta-schedule 0.01:1.0:2:8
    """
    _start_worker_server("augcli.ricap", workers, cluster, dry_run)
    from .ricap import RicapSettings, make_montages

    settings = RicapSettings.of(input_dir, output_dir, count=count, size=size, beta=beta,
                                seed=seed, batch_size=batch_size, per_sample=per_sample, fmt=fmt,
                                hard_label=hard_label, epochs=epochs,
                                beta_schedule=beta_schedule, overwrite=overwrite)
    report = make_montages(settings, dry_run=dry_run, workers=workers, cluster=cluster,
                           progress=not quiet and not as_json, notify=print_failure)
    print_summary(report, as_json, quiet and not dry_run)
    sys.exit(report.exit_code)


@main.command("check")
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
@click.option("-p", "--profile", "profile_name", default="custom-vision", show_default=True,
              metavar="NAME", help="Upload target: custom-vision, azureml-automl or generic.")
@click.option("-t", "--task",
              type=click.Choice(["classification", "detection", "multiclass", "multilabel"]),
              default="classification", show_default=True,
              help="Project type: sets the minimum images per tag (multiclass and "
                   "multilabel, AutoML's names, are classification).")
@click.option("--annotations", "annotation_format",
              type=_AnnotationFormats(),
              help="With --task detection: count objects per label from these annotations; "
                   "the labels become the tags.")
@annotations_path_option
@json_option
@click.option("-v", "--verbose", is_flag=True,
              help="List every finding by file, even of a kind found in many files.")
@workers_option
@quiet_option
def check_command(folder, profile_name, task, annotation_format, annotations_path, as_json,
                  verbose, workers, quiet):
    """Check that FOLDER is ready to upload to a hosted trainer.

    Each folder that directly holds images is a tag (images directly in
    FOLDER are the tag '.'). Per tag: usable images against the profile's
    minimum and recommended count. Per file: format (by content), file
    size, smallest and largest side, aspect ratio, unreadable or truncated
    files, and byte-identical copies within a tag. Too-small sides, copies
    and tags under the recommended count are warnings; the rest are errors.

    For object detection, --annotations FORMAT counts the labelled objects:
    each label is a tag, measured by the usable images that hold it.

    A kind of finding in more than 3 files is shown once, with the number of
    files and examples; --verbose lists each. Files are checked by worker
    processes (--workers, default every core) behind a progress bar.

    Exit code: 0 ready (warnings allowed), 1 not ready, 2 usage error;
    with --quiet the exit code is the whole answer (no bar, no report).

    Example:

        augcli check boxes_out --profile custom-vision --task detection --annotations yolo

        augcli check out --profile azureml-automl --task multiclass

        augcli check out --json > report.json

        augcli check out --quiet && az storage blob upload-batch ...
    """
    import json

    from .check import check_folder, format_report

    spec = _annotation_spec(annotation_format, annotations_path)
    report = check_folder(folder, profile_name, task, spec, workers=workers,
                          progress=not quiet)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    elif not quiet:
        click.echo(format_report(report, verbose))
    sys.exit(report.exit_code)


@main.command("export")
@click.argument("source", metavar="DIR", type=click.Path(path_type=str))
@click.option("--to", "target", required=True, type=click.Choice(sorted(EXPORTS)),
              help="What to write: " + "; ".join(f"{name}: {what}"
                                                 for name, what in EXPORTS.items()) + ".")
@click.option("-t", "--task", required=True,
              type=click.Choice(["multiclass", "multilabel", "detection", "segmentation"]),
              help="azureml: AutoML's task (segmentation: COCO or YOLO-seg polygons).")
@click.option("--image-url", metavar="PREFIX",
              help="Where DIR is uploaded: each line's image_url is PREFIX/<path in DIR>. "
                   "The long azureml://subscriptions/.../datastores/<ds>/paths/<folder> form, "
                   "or an https://, abfss:// or wasbs:// URL.")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False),
              help="Output folder or URL [default: DIR/azureml].")
@click.option("--annotations", "annotation_format",
              type=click.Choice(["yolo", "voc", "coco", "regions"]),
              help="Labels from these annotations, not the class folders [default: what a "
                   "dataset's layout shows].")
@annotations_path_option
@quiet_option
def export_command(source, target, task, image_url, output_dir, annotation_format,
                   annotations_path, quiet):
    """Write DIR as another trainer's dataset, e.g. Azure ML AutoML for images.

    --to azureml writes, per split (a plain folder is 'train'; a dataset's
    splits are train, validation, test), <split>/annotations.jsonl and
    <split>/MLTable, as AutoML reads them. Labels are the class folders
    (multiclass; multilabel: the same picture in several folders), or the
    boxes of a YOLO/VOC/COCO/regions folder or dataset. Upload DIR to the
    datastore folder PREFIX names, then point the AutoML job at the MLTable
    folders. An image that cannot be read is left out and named.

    Exit code: 0 all written, 1 some images left out, 2 usage error.

    Example:

    \b
        augcli export out --to azureml --task multiclass \\
            --image-url https://myaccount.blob.core.windows.net/images/out
    """
    from .exports import load_export

    spec = _annotation_spec(annotation_format, annotations_path)
    report = load_export(target).export(source, output_dir, task=task, image_url=image_url,
                                        annotations=spec)
    for line in report.failures:
        click.echo(f"failed: {line}", err=True)
    if not quiet:
        click.echo(report.summary(), err=True)
    sys.exit(report.exit_code)


@main.command("init")
@click.argument("folder", type=click.Path(path_type=str))
@click.option("-o", "--output", "recipe_path", default="recipe.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=str), help="Recipe file to write.")
@click.option("--force", is_flag=True, help="Replace the recipe file if it exists.")
def init_command(folder, recipe_path, force):
    """Write a commented starter recipe for FOLDER, to edit and run.

    Looks at FOLDER as 'run' would: class folders (classification), a
    folder with label files (YOLO images/ and labels/, a COCO file, VOC
    XML beside the images: detection), a dataset (a data.yaml, or
    train/valid/test folders) or a flat folder of images; FOLDER may be an
    object-store prefix (s3://, az://, gs://), read as 'run' reads it. The
    recipe names the input, an output folder beside it, the labels to carry
    ('annotations:') and three variants of ops every label follows, each
    key explained in a comment. An existing recipe file is not replaced
    without --force.

    Exit code: 0 written, 2 usage error (no such folder, no images, the
    file exists).

    Example:

        augcli init sample_images -o starter.yaml
    """
    from shlex import quote

    from .starter import write_starter

    starter = write_starter(folder, recipe_path, force)
    recipe = quote(recipe_path)
    click.echo(f"{folder}: {starter.found}")
    click.echo(f"wrote {recipe_path} ({starter.kind}); next:")
    click.echo(f"  augcli preview {recipe} {quote(starter.example)}")
    click.echo(f"  augcli run {recipe} --dry-run")
    click.echo(f"  augcli run {recipe}")


def _annotation_spec(fmt: str | None, path: str | None):
    """The --annotations FORMAT and --annotations-path of a command, or None without them."""
    if fmt is None:
        if path is not None:
            raise UsageError("--annotations-path needs --annotations FORMAT")
        return None
    from pathlib import Path

    from .formats import AnnotationSpec, lookup

    record = lookup(fmt)
    if not record.per_image and path is None:
        raise UsageError(f"--annotations {fmt} needs --annotations-path FILE "
                         f"({record.path_help})")
    return AnnotationSpec(fmt, Path(path) if path else None)


def _examples_unwrapped(group: click.Group) -> None:
    """Click rewraps help paragraphs to the terminal's width, which breaks an example
    command across lines: mark each paragraph of ``augcli ...`` lines as kept as written
    (click's ``\\b``), so every example can be copied and run."""
    for command in group.commands.values():
        if command.help:
            command.help = re.sub(r"\n\n(    )( +augcli )", "\n\n\\1\b\n\\1\\2",
                                  command.help)


_examples_unwrapped(main)

if __name__ == "__main__":  # pragma: no cover
    main()
