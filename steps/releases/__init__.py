"""Release records: what each release did, kept for good, and the aliases naming production.

The `record-release` step (`steps/record.py`) writes them at the end of a release run and
`llmflow releases` reads them; in Python:
    store = RecordStore.open("s3://llmflow-models/releases")
    store.put(record)                      # immutable: a second put of one id fails
    store.promote("tiny-llama", record.release)
    store.alias("tiny-llama", "production")
"""

from steps.releases.errors import (
    ConditionalWritesIgnored,
    RecordError,
    RecordExists,
    RecordNotFound,
    ReleaseConflict,
)
from steps.releases.record import (
    OUTCOMES,
    SCHEMA_VERSION,
    CanaryStage,
    CanarySummary,
    EvaluationSummary,
    GitRef,
    Outcome,
    ReleaseRecord,
    TrainingSummary,
    WeightsRef,
    WorkflowRef,
    release_id,
    utc_now,
)
from steps.releases.store import ALIASES, Aliases, RecordStore

__all__ = [
    "ALIASES",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "Aliases",
    "CanaryStage",
    "CanarySummary",
    "ConditionalWritesIgnored",
    "EvaluationSummary",
    "GitRef",
    "Outcome",
    "RecordError",
    "RecordExists",
    "RecordNotFound",
    "RecordStore",
    "ReleaseConflict",
    "ReleaseRecord",
    "TrainingSummary",
    "WeightsRef",
    "WorkflowRef",
    "release_id",
    "utc_now",
]
