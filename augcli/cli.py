"""The command line: a thin Click layer over the library.

Each command parses flags, calls one library function, and turns an
``AugcliError`` into ``Error: ...`` with its exit code. Library modules are
imported inside commands so that ``augcli --help`` does not load NumPy,
OpenCV or imgaug.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import EXIT_USAGE, AugcliError, UsageError


class _Group(click.Group):
    """Turns library errors into a one-line message and an exit code, never a traceback."""

    def invoke(self, ctx):
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
        except KeyboardInterrupt:
            click.echo("Interrupted. Finished outputs are kept; rerun the same command to "
                       "make the rest.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="augcli")
def main():
    """Turn a folder of images into a bigger, varied training set.

    Write a YAML recipe, then run it:

        augcli run recipe.yaml
    """


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("-i", "--input", "input_dir", type=click.Path(file_okay=False),
              help="Input folder (overrides the recipe's 'input').")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False),
              help="Output folder (overrides the recipe's 'output').")
@click.option("-w", "--workers", type=click.IntRange(min=1),
              help="Worker processes [default: all cores; 1 runs in-process].")
@click.option("--seed", type=click.IntRange(min=0), help="Seed (overrides the recipe's 'seed').")
@click.option("--per-class", type=click.IntRange(min=1),
              help="Top every class folder up to N images, originals included "
                   "(overrides 'target_per_class').")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs of an earlier run, even of a different recipe or seed.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def run(recipe, input_dir, output_dir, workers, seed, per_class, dry_run, overwrite, quiet):
    """Augment every image of a folder as RECIPE says.

    Each source image gets suffixed copies in the output folder, in the same
    subfolder: cats/tom.jpg -> cats/tom_noise_1.jpg, cats/tom_rotate_2.jpg.
    A manifest.jsonl beside them records each output's source, seed and
    sampled parameters. Rerunning the same recipe finishes an interrupted run
    and skips what is done.

    Exit code: 0 all good, 1 some inputs failed, 2 recipe or usage error.

    Example:

        augcli run recipe.yaml --output out --workers 4
    """
    from .runner import plan_run, resolve_recipe, run_recipe

    if dry_run:
        plan = plan_run(resolve_recipe(recipe, input=input_dir, output=output_dir, seed=seed,
                                       per_class=per_class))
        _print_plan(plan)
        return

    def notify(line):
        from tqdm import tqdm

        tqdm.write(f"failed: {line}", file=sys.stderr)

    report = run_recipe(recipe, input=input_dir, output=output_dir, seed=seed,
                        per_class=per_class, workers=workers, overwrite=overwrite,
                        progress=not quiet, notify=notify)
    if not quiet:
        for line in report.class_lines():
            click.echo(line, err=True)
        click.echo(report.summary(), err=True)
        if report.ignored:
            click.echo(f"ignored {len(report.ignored)} file(s) that are not images "
                       f"(e.g. {report.ignored[0]})", err=True)
    sys.exit(report.exit_code)


@main.command("ops")
@click.argument("name", required=False)
def list_ops(name):
    """List every op with its parameters, or show one op in full.

    Example:

        augcli ops            # all ops, their parameters and defaults

        augcli ops rotate     # one op, with a recipe snippet
    """
    from . import ops

    if name is None:
        click.echo(ops.catalog_listing())
        return
    text = ops.op_help(name)
    if text is None:
        close = ops.closest_names(name, ops.all_names())
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"no op named '{name}'{hint}; run 'augcli ops' for the list")
    click.echo(text)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
def validate(recipe):
    """Check RECIPE and report every problem, without touching any image.

    Exit code: 0 when the recipe is valid, 2 with one line per problem when not.

    Example:

        augcli validate recipe.yaml
    """
    from .recipe import load_recipe

    loaded = load_recipe(recipe)
    outputs = sum(variant.outputs_per_source for variant in loaded.variants)
    click.echo(f"{recipe}: valid; {len(loaded.variants)} variant(s), {outputs} output(s) "
               "per source image")


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


def _print_plan(plan):
    for task in plan.tasks:
        per_variant = {}
        for output in task.outputs:
            label = output.variant or "original"
            per_variant[label] = per_variant.get(label, 0) + 1
        detail = ", ".join(f"{name} {count}" for name, count in per_variant.items())
        click.echo(f"{task.relative}: {len(task.outputs)} outputs ({detail})")
    for count in plan.classes:
        click.echo(f"class {count.tag}: {count.before} -> {count.after}")
    click.echo(f"total: {len(plan.tasks)} sources -> {plan.total_outputs} outputs in "
               f"{plan.output_dir} (dry run: nothing written)")


if __name__ == "__main__":  # pragma: no cover
    main()
