"""Event log, ingestion, sessionization and activity documents."""

from jobmatch.events.documents import company_token, render_documents, render_event
from jobmatch.events.ingest import Batch, IngestError, RowError, detect_kind, read_batch
from jobmatch.events.log import EventLog
from jobmatch.events.sessions import DEFAULT_GAP_MINUTES, Sessions, session_starts, sessionize

__all__ = ["Batch", "DEFAULT_GAP_MINUTES", "EventLog", "IngestError", "RowError", "Sessions", "company_token",
           "detect_kind", "read_batch", "render_documents", "render_event", "session_starts", "sessionize"]
