"""Simulation parameters. Defaults land in the seeds' regime (see the README's simulator section)."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    members: int = Field(20_000, ge=10)
    days: int = Field(28, ge=1, le=366)
    seed: int = 1
    start: datetime = datetime(2026, 1, 5, tzinfo=timezone.utc)

    max_occupations: int = Field(120, ge=2, description="larger taxonomies are cut to a related-connected subset")
    companies_per_member: float = 0.05
    jobs_per_member: float = 0.30
    job_lifetime_median_days: float = 21.0
    prior_posting_days: float = 20.0  # jobs already open when the period starts
    remote_job_share: float = 0.2

    # Seekers: activity is heavy-tailed; a seeking window is a few weeks inside (or across) the period.
    sessions_per_day_median: float = 0.3
    sessions_per_day_sigma: float = 1.0
    seeking_days_median: float = 24.0
    never_search_share: float = 0.045  # plus those who could search but did not: ~16% observed
    open_to_work_share: float = 0.4
    remote_pref_share: float = 0.15
    related_target_share: float = 0.25  # seekers whose target is a related occupation from the start
    drift_share: float = 0.2  # seekers whose intent drifts (to remote work or to a related occupation)
    hidden_skills: int = 2  # skills a member has but does not list; hirers see them, models must learn them

    # Hirers
    recommended_matches_share: float = 0.6
    recruiter_search_share: float = 0.3
    explicit_negative_share: float = 0.45
    conclusive_silence_days: float = 14.0
    # Study knobs (issue 15), each a property real marketplaces differ in; 1.0 is the default market.
    hirer_preference_scale: float = Field(1.0, ge=0.0, description=(
        "multiplies every project's latent preference weights (liked skills, occupations, seniority): how much "
        "hirers' tastes differ from project to project, against the fixed rating noise (sd 0.5)"))
    sourcing_intensity: float = Field(1.0, gt=0.0, description=(
        "multiplies the mean number of recommended-matches (3) and recruiter-search (2) requests per sourcing "
        "project: how much hirers use the sourcing tools, i.e. the feedback volume per project"))
