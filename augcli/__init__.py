"""augcli: turn a folder of images into a bigger, varied training set.

The library is importable without the CLI::

    from augcli import run_recipe
    report = run_recipe("recipe.yaml", output="out", workers=2)
    print(report.summary())

Heavy modules load on first use, so ``import augcli`` and ``augcli --help``
stay fast.
"""

__version__ = "0.2.0"

_LAZY = {
    "run_recipe": "runner",
    "plan_run": "runner",
    "Report": "runner",
    "load_recipe": "recipe",
    "parse_recipe": "recipe",
    "normalize_folder": "normalize",
    "NormalizeSettings": "normalize",
    "make_montages": "ricap",
    "RicapSettings": "ricap",
    "ricap_batch": "ricap",
    "BetaSchedule": "ricap",
    "load_transform": "transform",
    "output_seed": "transform",
    "Transform": "transform",
    "TransformResult": "transform",
    "check_folder": "check",
    "AugcliError": "errors",
    "RecipeError": "errors",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'augcli' has no attribute {name!r}")


__all__ = ["AugcliError", "BetaSchedule", "NormalizeSettings", "RecipeError", "Report",
           "RicapSettings", "Transform", "TransformResult", "__version__", "check_folder",
           "load_recipe", "load_transform", "make_montages", "normalize_folder", "output_seed",
           "parse_recipe", "plan_run", "ricap_batch", "run_recipe"]
