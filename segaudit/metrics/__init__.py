"""Metrics: how well a map agrees with a mask (:mod:`~segaudit.metrics.scores`), how much the model
believes each label (:mod:`~segaudit.metrics.label_quality`), whether a map covers every instance
(:mod:`~segaudit.metrics.instances`) and CAM-prompted segmentation (:mod:`~segaudit.metrics.prompting`).
Tensors in, tensors out, whole batches at once; every function states its formula and citation. May import
torch, numpy, numba (the compiled loops of a CPU: :mod:`~segaudit.metrics.rank_kernel`,
:mod:`~segaudit.metrics.point_kernel`, :mod:`~segaudit.metrics.sums_kernel`) and :mod:`segaudit.schema`;
nothing of the models, the engine or the audit.
"""
