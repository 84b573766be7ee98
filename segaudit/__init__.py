"""segaudit: audit image-segmentation datasets and models with class activation maps.

The pure core owns the work, array/tensor in, array/tensor/DataFrame out, and never imports Prefect:
:mod:`segaudit.data` (readers, samples, class maps, model input), :mod:`segaudit.models` (the model
registry and shipped architectures), :mod:`segaudit.cam` (the CAM engine), :mod:`segaudit.metrics`
(map-vs-mask scores, label quality, instance coverage, CAM prompts), :mod:`segaudit.auditors` (one batch of
one model family -> table rows), :mod:`segaudit.findings` (ranks and findings from the tables) and
:mod:`segaudit.runs` (a run's identity, shards and Parquet tables). :mod:`segaudit.devtools` holds the
development tools (synthetic data, training, validation, the demo). The orchestration and the page are
installed under this name too but live in the repository's top-level folders: ``flows/`` ->
:mod:`segaudit.flows`, ``tasks/`` -> :mod:`segaudit.tasks`, ``reports/`` -> :mod:`segaudit.reports`;
:mod:`segaudit.cli` is the ``segaudit`` command, and the only core module that reaches the flows (inside
its commands, never at import).
"""

__version__ = "0.1.0"

__all__ = ["audit", "load_run", "__version__"]


def __getattr__(name: str):
    # imported on first use: every ``segaudit.*`` import runs this file, the CLI's ``--help`` included, and
    # the tables module brings pandas and pyarrow
    if name == "audit":
        from segaudit.api import audit

        return audit
    if name == "load_run":
        from segaudit.runs.tables import load_run

        return load_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
