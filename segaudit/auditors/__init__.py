"""Auditors: one batch of samples, one model -> the rows of the images, scores, maps, instances, thumbnails,
confusion and errors tables. May import :mod:`segaudit.data`, :mod:`segaudit.models`, :mod:`segaudit.cam`,
:mod:`segaudit.metrics` and :mod:`segaudit.schema`; never Prefect, never the run folder.

``batch``           the public functions: ``check_config``, ``explain_batch``, ``score_batch``, ``finish_tables``
``base``            the ``Auditor`` interface (``explain``, ``score``) and ``auditor_for(model)``
``segmentation``, ``detection``, ``classification``  one auditor per model family (``model.task``)
``rows``            the row builders every auditor shares
``failures``        the failure policy: what is retried, halved, or becomes an error row
"""
