"""Entities and events of a job marketplace.

Two views of the same contract: pydantic models validate one record at a time (API, tests, error messages),
and Arrow schemas describe the columnar tables that files, the event log and the flows exchange. Entity ids
are int64; event ids are strings chosen by the producer (stable, so re-sending an event is idempotent).
Timestamps are UTC with microsecond precision.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Literal

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 512


class Action(StrEnum):
    SEARCH = "SEARCH"
    VIEW = "VIEW"
    SAVE = "SAVE"
    APPLY = "APPLY"
    DISMISS = "DISMISS"


class Channel(StrEnum):
    SEARCH = "search"
    RECOMMENDATIONS = "recommendations"
    ALERTS = "alerts"
    NOTIFICATIONS = "notifications"


class FeedbackChannel(StrEnum):
    APPLICANTS = "applicants"
    RECOMMENDED_MATCHES = "recommended_matches"
    RECRUITER_SEARCH = "recruiter_search"


class FeedbackType(StrEnum):
    VIEW_PROFILE = "view_profile"
    MESSAGE = "message"
    INTERVIEW = "interview"
    OFFER = "offer"
    ARCHIVE = "archive"
    SKIP = "skip"
    REJECT = "reject"


POSITIVE_FEEDBACK = frozenset({FeedbackType.VIEW_PROFILE, FeedbackType.MESSAGE, FeedbackType.INTERVIEW, FeedbackType.OFFER})
NEGATIVE_FEEDBACK = frozenset({FeedbackType.ARCHIVE, FeedbackType.SKIP, FeedbackType.REJECT})

# Small integer codes used by the columnar/numpy paths; order is part of the on-disk contract.
ACTION_CODES: dict[str, int] = {a.value: i for i, a in enumerate(Action)}
CHANNEL_CODES: dict[str, int] = {c.value: i for i, c in enumerate(Channel)}

Id = Annotated[int, Field(ge=0)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]


def _as_utc(value: datetime) -> datetime:
    # Timestamps must carry a zone (Z or an offset): a naive time is ambiguous, so it is rejected, not guessed.
    return value.astimezone(timezone.utc)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class Company(_Record):
    company_id: Id
    name: Text
    industry: Text
    location: Text


class Job(_Record):
    job_id: Id
    company_id: Id
    title: Text
    occupation: Text
    skills: list[Text]
    location: Text
    remote: bool
    seniority: Annotated[int, Field(ge=1, le=5)]
    posted_at: AwareDatetime
    expires_at: AwareDatetime

    _utc = field_validator("posted_at", "expires_at")(_as_utc)


class Member(_Record):
    member_id: Id
    title: Text
    occupation: Text
    skills: list[Text]
    seniority: Annotated[int, Field(ge=1, le=5)]
    location: Text
    open_to_work: bool


class HiringProject(_Record):
    project_id: Id
    job_id: Id
    company_id: Id
    created_at: AwareDatetime

    _utc = field_validator("created_at")(_as_utc)


class ActivityEvent(_Record):
    """A seeker's action. SEARCH carries the query text and no job; every other action names a job."""

    event_id: EventId
    member_id: Id
    ts: AwareDatetime
    action: Action
    channel: Channel
    job_id: Id | None = None
    query: Text | None = None

    _utc = field_validator("ts")(_as_utc)

    @model_validator(mode="after")
    def _action_fields(self) -> ActivityEvent:
        if self.action == Action.SEARCH:
            if not self.query:
                raise ValueError("query: required when action is SEARCH")
        elif self.job_id is None:
            raise ValueError(f"job_id: required when action is {self.action}")
        return self


class HirerFeedback(_Record):
    """A hirer's rating of a candidate within a hiring project, in the channel where the candidate was seen."""

    feedback_id: EventId
    project_id: Id
    member_id: Id
    ts: AwareDatetime
    channel: FeedbackChannel
    feedback: FeedbackType

    _utc = field_validator("ts")(_as_utc)


EventKind = Literal["events", "feedback"]

TS = pa.timestamp("us", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("job_id", pa.int64()),
        pa.field("query", pa.string()),
    ]
)

FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("feedback_id", pa.string(), nullable=False),
        pa.field("project_id", pa.int64(), nullable=False),
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("feedback", pa.string(), nullable=False),
    ]
)

COMPANY_SCHEMA = pa.schema(
    [("company_id", pa.int64()), ("name", pa.string()), ("industry", pa.string()), ("location", pa.string())]
)

JOB_SCHEMA = pa.schema(
    [
        ("job_id", pa.int64()),
        ("company_id", pa.int64()),
        ("title", pa.string()),
        ("occupation", pa.string()),
        ("skills", pa.list_(pa.string())),
        ("location", pa.string()),
        ("remote", pa.bool_()),
        ("seniority", pa.int8()),
        ("posted_at", TS),
        ("expires_at", TS),
    ]
)

MEMBER_SCHEMA = pa.schema(
    [
        ("member_id", pa.int64()),
        ("title", pa.string()),
        ("occupation", pa.string()),
        ("skills", pa.list_(pa.string())),
        ("seniority", pa.int8()),
        ("location", pa.string()),
        ("open_to_work", pa.bool_()),
    ]
)

PROJECT_SCHEMA = pa.schema(
    [("project_id", pa.int64()), ("job_id", pa.int64()), ("company_id", pa.int64()), ("created_at", TS)]
)

SCHEMAS: dict[str, pa.Schema] = {"events": EVENT_SCHEMA, "feedback": FEEDBACK_SCHEMA}
ID_FIELD: dict[str, str] = {"events": "event_id", "feedback": "feedback_id"}
ENUM_FIELDS: dict[str, dict[str, frozenset[str]]] = {
    "events": {"action": frozenset(ACTION_CODES), "channel": frozenset(CHANNEL_CODES)},
    "feedback": {
        "channel": frozenset(c.value for c in FeedbackChannel),
        "feedback": frozenset(f.value for f in FeedbackType),
    },
}
