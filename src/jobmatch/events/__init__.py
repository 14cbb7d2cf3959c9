"""Event log, ingestion and validation, sessionization and activity documents."""

from jobmatch.events.documents import (DOCUMENT_CONTENT, MemberDocs, build_documents, company_token,
                                       render_documents, render_event)
from jobmatch.events.ingest import (Batch, FileProblem, IngestError, RowError, TimeBounds, detect_kind, folder_files,
                                    read_batch, read_records, validate_table, write_rejects)
from jobmatch.events.log import (AppendResult, ConflictError, EventLog, LogBusyError, LogError, Snapshot,
                                 action_codes)
from jobmatch.events.sessions import DEFAULT_GAP_MINUTES, Sessions, session_starts, sessionize

__all__ = ["AppendResult", "Batch", "ConflictError", "DEFAULT_GAP_MINUTES", "DOCUMENT_CONTENT", "EventLog",
           "FileProblem", "IngestError",
           "LogBusyError", "LogError", "MemberDocs", "RowError", "Sessions", "Snapshot", "TimeBounds",
           "action_codes", "build_documents", "company_token", "detect_kind", "folder_files", "read_batch", "read_records",
           "render_documents", "render_event", "session_starts", "sessionize", "validate_table", "write_rejects"]
