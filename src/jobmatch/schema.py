"""Entities and events of a job marketplace.

Two views of the same contract: pydantic models validate one record at a time (API, tests, error messages),
and Arrow schemas describe the columnar tables that files, the event log and the flows exchange. Entity ids
are int64; event ids are strings chosen by the producer (stable, so re-sending an event is idempotent).
Timestamps are UTC with microsecond precision.

Every table the log holds is a *kind* with one `KindSpec`: its Arrow schema, its id, the values its enum
fields may take, its free-text fields and its time fields. Ingest validates every kind through the same
columnar rules (`jobmatch.events.ingest`), whether it comes from a file, the HTTP API or the simulator.
Stream kinds (events, feedback, impressions, hirer impressions) are appended with idempotent string ids;
entity kinds (companies, jobs, members, projects) are upserted by their int64 id.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from dataclasses import dataclass, field
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


class SeekerImpression(_Record):
    """A job shown to a seeker: one row per (request, position). Outcomes are not part of it: they are the
    seeker's later VIEW/SAVE/APPLY/DISMISS events, attributed to the impression by the log."""

    impression_id: EventId
    request_id: EventId
    member_id: Id
    job_id: Id
    ts: AwareDatetime
    channel: Channel
    position: Annotated[int, Field(ge=0, le=10_000)]
    query: Text | None = None

    _utc = field_validator("ts")(_as_utc)


class HirerImpression(_Record):
    """A candidate shown to a hiring project's hirer (sourcing channels: recommended matches, recruiter search)."""

    impression_id: EventId
    request_id: EventId
    project_id: Id
    member_id: Id
    ts: AwareDatetime
    channel: FeedbackChannel
    position: Annotated[int, Field(ge=0, le=10_000)]

    _utc = field_validator("ts")(_as_utc)

StreamKind = Literal["events", "feedback", "impressions", "hirer_impressions"]
EntityKind = Literal["companies", "jobs", "members", "projects"]
EventKind = StreamKind  # kept for callers that name stream kinds
STREAM_KINDS: tuple[str, ...] = ("events", "feedback", "impressions", "hirer_impressions")
ENTITY_KINDS: tuple[str, ...] = ("companies", "jobs", "members", "projects")

TS = pa.timestamp("us", tz="UTC")


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, type_, nullable=nullable) for name, type_, nullable in fields])


EVENT_SCHEMA = _schema(("event_id", pa.string(), False), ("member_id", pa.int64(), False), ("ts", TS, False),
                       ("action", pa.string(), False), ("channel", pa.string(), False), ("job_id", pa.int64(), True),
                       ("query", pa.string(), True))
FEEDBACK_SCHEMA = _schema(("feedback_id", pa.string(), False), ("project_id", pa.int64(), False),
                          ("member_id", pa.int64(), False), ("ts", TS, False), ("channel", pa.string(), False),
                          ("feedback", pa.string(), False))
IMPRESSION_SCHEMA = _schema(("impression_id", pa.string(), False), ("request_id", pa.string(), False),
                            ("member_id", pa.int64(), False), ("job_id", pa.int64(), False), ("ts", TS, False),
                            ("channel", pa.string(), False), ("position", pa.int32(), False),
                            ("query", pa.string(), True))
HIRER_IMPRESSION_SCHEMA = _schema(("impression_id", pa.string(), False), ("request_id", pa.string(), False),
                                  ("project_id", pa.int64(), False), ("member_id", pa.int64(), False),
                                  ("ts", TS, False), ("channel", pa.string(), False), ("position", pa.int32(), False))
COMPANY_SCHEMA = _schema(("company_id", pa.int64(), False), ("name", pa.string(), False),
                         ("industry", pa.string(), False), ("location", pa.string(), False))
JOB_SCHEMA = _schema(("job_id", pa.int64(), False), ("company_id", pa.int64(), False), ("title", pa.string(), False),
                     ("occupation", pa.string(), False), ("skills", pa.list_(pa.string()), False),
                     ("location", pa.string(), False), ("remote", pa.bool_(), False), ("seniority", pa.int8(), False),
                     ("posted_at", TS, False), ("expires_at", TS, False))
MEMBER_SCHEMA = _schema(("member_id", pa.int64(), False), ("title", pa.string(), False),
                        ("occupation", pa.string(), False), ("skills", pa.list_(pa.string()), False),
                        ("seniority", pa.int8(), False), ("location", pa.string(), False),
                        ("open_to_work", pa.bool_(), False))
PROJECT_SCHEMA = _schema(("project_id", pa.int64(), False), ("job_id", pa.int64(), False),
                         ("company_id", pa.int64(), False), ("created_at", TS, False))

FEEDBACK_CHANNELS = frozenset(c.value for c in FeedbackChannel)
FEEDBACK_TYPES = frozenset(f.value for f in FeedbackType)
MAX_LIST_ITEMS = 200  # skills per job or member


@dataclass(frozen=True)
class KindSpec:
    name: str
    schema: pa.Schema
    id_field: str
    entity: bool = False
    enums: dict[str, frozenset[str]] = field(default_factory=dict)
    texts: tuple[str, ...] = ()  # free text: length-limited, no control characters
    times: tuple[str, ...] = ("ts",)  # must lie within the plausible-time bounds
    future_times: tuple[str, ...] = ()  # may lie far in the future (a job's expiry)
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return self.schema.names


KINDS: dict[str, KindSpec] = {
    "events": KindSpec("events", EVENT_SCHEMA, "event_id",
                       enums={"action": frozenset(ACTION_CODES), "channel": frozenset(CHANNEL_CODES)},
                       texts=("query",)),
    "feedback": KindSpec("feedback", FEEDBACK_SCHEMA, "feedback_id",
                         enums={"channel": FEEDBACK_CHANNELS, "feedback": FEEDBACK_TYPES}),
    "impressions": KindSpec("impressions", IMPRESSION_SCHEMA, "impression_id",
                            enums={"channel": frozenset(CHANNEL_CODES)}, texts=("query",),
                            ranges={"position": (0, 10_000)}),
    "hirer_impressions": KindSpec("hirer_impressions", HIRER_IMPRESSION_SCHEMA, "impression_id",
                                  enums={"channel": FEEDBACK_CHANNELS}, ranges={"position": (0, 10_000)}),
    "companies": KindSpec("companies", COMPANY_SCHEMA, "company_id", entity=True,
                          texts=("name", "industry", "location"), times=()),
    "jobs": KindSpec("jobs", JOB_SCHEMA, "job_id", entity=True, texts=("title", "occupation", "location", "skills"),
                     times=("posted_at",), future_times=("expires_at",), ranges={"seniority": (1, 5)}),
    "members": KindSpec("members", MEMBER_SCHEMA, "member_id", entity=True,
                        texts=("title", "occupation", "location", "skills"), times=(), ranges={"seniority": (1, 5)}),
    "projects": KindSpec("projects", PROJECT_SCHEMA, "project_id", entity=True, times=("created_at",)),
}
SCHEMAS: dict[str, pa.Schema] = {k: spec.schema for k, spec in KINDS.items()}
ID_FIELD: dict[str, str] = {k: spec.id_field for k, spec in KINDS.items()}
