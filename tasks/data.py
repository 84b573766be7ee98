"""Tasks that get the data: download and verify a public dataset into a data root."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from segaudit.data.download import DownloadError, ensure_dataset


def _retry_unless_offline(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    """Retry dropped connections and bad checksums (the part is removed, the next try starts clean); not
    an unknown dataset."""
    try:
        state.result()
    except (DownloadError, OSError):
        return True
    except BaseException:  # noqa: BLE001 - anything else is final
        return False
    return False


@task(name="download-dataset", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[10, 60, 300],
      retry_condition_fn=_retry_unless_offline, task_run_name="download-{name}")
def download_dataset_task(name: str, root: str) -> str:
    """Download, verify and unpack dataset ``name`` (a key of :data:`segaudit.data.download.DATASETS`) under
    ``root`` unless it is there; log progress every 10%."""
    logger = get_run_logger()
    reported: dict[str, int] = {}

    def progress(file_name: str, done: int, total: int | None) -> None:
        if total:
            tenth = 10 * done // total
            if tenth > reported.get(file_name, -1):
                reported[file_name] = tenth
                logger.info("%s: %d%% of %.0f MB", file_name, 10 * tenth, total / 1e6)

    return str(ensure_dataset(name, root, progress=progress))
