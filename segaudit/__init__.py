"""segaudit: audit image-segmentation datasets and models with class activation maps.

The pure core (no orchestration): readers (:mod:`segaudit.readers`), models (:mod:`segaudit.models`), the
CAM engine (:mod:`segaudit.cam`), scores (:mod:`segaudit.scores`), the batch audit
(:mod:`segaudit.audit`) and the run tables (:mod:`segaudit.tables`). Prefect tasks and flows live in the
top-level ``tasks`` and ``flows`` packages, the HTML report in ``reports``.
"""

from segaudit.tables import load_run

__version__ = "0.1.0"

__all__ = ["load_run", "__version__"]
