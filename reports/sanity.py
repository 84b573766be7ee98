"""The report's sanity flag: which (method, layer) maps do not change when the model is randomised.

From the run's ``sanity`` table (:mod:`segaudit.auditors.calibration`, Adebayo et al. 2018): at the last step
of the cascading randomisation (every listed block random), a method whose maps keep a mean SSIM of at least
:data:`SSIM_LIMIT` to the trained model's, or a mean absolute Spearman correlation of at least
:data:`SPEARMAN_LIMIT`, fails the check: its maps show the input or the architecture, not the model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["SSIM_LIMIT", "SPEARMAN_LIMIT", "sanity_summary"]

#: A method fails the check when its maps keep this mean SSIM once the whole model is random ...
SSIM_LIMIT = 0.5
#: ... or this mean rank correlation of the absolute maps.
SPEARMAN_LIMIT = 0.5


def sanity_summary(sanity: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (method, layer), the last step's block count, SSIM, Spearman and whether it ``fails``; ``[]``
    when the run has no sanity rows (``evidence="none"``, or a run made before the check)."""
    if sanity is None or not len(sanity):
        return []
    last = sanity.sort_values("step").groupby(["method", "layer"], sort=False).tail(1)
    return [{"method": str(r.method), "layer": str(r.layer), "steps": int(r.step), "ssim": float(r.ssim),
             "spearman": float(r.spearman), "spearman_abs": float(r.spearman_abs), "n_maps": int(r.n_maps),
             "fails": bool(r.ssim >= SSIM_LIMIT or r.spearman_abs >= SPEARMAN_LIMIT)}
            for r in last.sort_values(["layer", "method"]).itertuples()]
