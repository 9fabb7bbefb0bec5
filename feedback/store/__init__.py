"""The click store: durable, validated, idempotent events for serving and training.

No TensorFlow here: the store, its tests and ``mmrec feedback`` commands load
in well under a second. :mod:`feedback.store.store` explains what the store
promises and what it does not do; :mod:`feedback.store.schema` the tables and
the consumer watermark; :mod:`feedback.store.events` what a valid event is.

Example:

    from feedback.store import FeedbackStore
    store = FeedbackStore("sqlite:///feedback.db")
    store.ingest([{"user_id": "u1", "item_id": "i9", "timestamp": 1704103200}])
"""

from feedback.store.config import DEFAULT_STORE_URL, StoreConfig, store_url
from feedback.store.events import REASONS, Event, EventValidator, Rejection
from feedback.store.schema import SCHEMA_VERSION, SchemaVersionError, StoreError
from feedback.store.store import (EventBatch, FeedbackStore, ForgetReport, History, IngestReport,
                                  PruneReport, QuarantinedRecord, StoreStats, Watermark)

__all__ = ["DEFAULT_STORE_URL", "REASONS", "SCHEMA_VERSION", "Event", "EventBatch",
           "EventValidator", "FeedbackStore", "ForgetReport", "History", "IngestReport",
           "PruneReport", "QuarantinedRecord", "Rejection", "SchemaVersionError", "StoreConfig",
           "StoreError", "StoreStats", "Watermark", "store_url"]
