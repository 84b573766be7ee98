"""Auditors: one batch of samples, one model -> the rows of the images, scores, maps, instances, thumbnails,
confusion and errors tables. May import :mod:`segaudit.data`, :mod:`segaudit.models`, :mod:`segaudit.cam`,
:mod:`segaudit.metrics` and :mod:`segaudit.schema`; never Prefect, never the run folder.
"""
