"""`flowrun batch --via batch-api`: a batch's runs, round by round, through OpenAI's Batch API at half the price.

One seam: `BatchAPIJob` (a `BatchRunner` whose engine's transport files each request in a wave,
see `_waves`), with `BatchClient` for the server's files and batches (`_client`) and the journal
that makes a job resumable (`_journal`). Imported only by `flowrun batch --via batch-api`.
"""

from __future__ import annotations

from ._client import BatchClient
from ._journal import journal_path, read_journal
from ._waves import BatchAPIJob, JobProgress, JobSettings, JobSummary

__all__ = ["BatchAPIJob", "BatchClient", "JobProgress", "JobSettings", "JobSummary", "journal_path", "read_journal"]
