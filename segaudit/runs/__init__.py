"""Runs: a run's identity (key) and folder, its metadata, its plan of shards and resumption, the audit of
one shard, and its Parquet tables (writing, the one-call loader :func:`~segaudit.runs.tables.load_run`, the
Markdown summary). May import every core package above it (data, models, auditors, findings) and fsspec /
pyarrow; never Prefect.
"""
