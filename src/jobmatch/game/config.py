"""`game.toml`: a GAME training job on any Parquet data with the right shape (see examples/game/game.toml).

    [data]
    train = "train.parquet"            # paths are relative to the TOML file
    validation = "validation.parquet"  # optional; AUC after every pass, and the l2 choice
    response = "clicked"               # 0/1 column
    weight = "w"                       # optional
    offset = "prior_score"             # optional

    [training]
    passes = 2
    seed = 0
    validate = "pass"                  # or "coordinate": validation AUC after every coordinate update
    threads = 2                        # BLAS threads; default: the cores this process may use
    dtype = "float32"                  # per-row arithmetic; "float64" for bit-for-bit reproducibility

    [[coordinates]]
    name = "global"
    type = "fixed"
    features = ["f1", "f2"]
    l2 = 1.0                           # a number; a list to choose from on validation; omitted: DEFAULT_L2_GRID
                                       # with validation data, 1.0 without

    [[coordinates]]
    name = "per_user"
    type = "random"
    entity = "user_id"                 # integer or string ids
    features = ["item_f1"]
    min_samples = 3
    max_samples = 1000
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobmatch.game.model import Coordinate, GameModel

DEFAULT_L2_GRID = (0.1, 1.0, 10.0, 100.0)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: Path
    validation: Path | None = None
    response: str = "response"
    weight: str | None = None
    offset: str | None = None


class _Training(BaseModel):
    model_config = ConfigDict(extra="forbid")
    passes: int = Field(2, ge=1)
    seed: int = 0
    validate_: Literal["pass", "coordinate"] = Field("pass", alias="validate")
    threads: int | None = Field(None, ge=1)
    dtype: Literal["float32", "float64"] = "float32"


class _Coordinate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: Literal["fixed", "random"]
    features: list[str]
    l2: float | list[float] | None = None
    entity: str | None = None
    min_samples: int = Field(1, ge=1)
    max_samples: int | None = Field(None, ge=1)
    regularize_intercept: bool | None = None

    @field_validator("l2")
    @classmethod
    def _l2(cls, value: float | list[float] | None) -> float | list[float] | None:
        values = value if isinstance(value, list) else [] if value is None else [value]
        if isinstance(value, list) and not value:
            raise ValueError("an empty grid")
        if any(v < 0 for v in values):
            raise ValueError("must be >= 0")
        return value

    def coordinate(self, validation: bool) -> Coordinate:
        grid = self.l2 if isinstance(self.l2, list) else DEFAULT_L2_GRID if self.l2 is None and validation else ()
        return Coordinate(self.name, self.type, tuple(self.features), self.l2 if isinstance(self.l2, float) else 1.0,
                          self.entity, self.min_samples, self.max_samples, self.regularize_intercept, tuple(grid))


class GameJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: _Data
    training: _Training = _Training()
    coordinates: list[_Coordinate] = Field(min_length=1)

    @classmethod
    def from_toml(cls, path: str | Path) -> GameJob:
        """The job at `path`, with data paths made relative to it; ValueError in one line naming what is wrong."""
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e})") from None
        try:
            job = cls.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            loc = list(first["loc"])
            if len(loc) >= 2 and loc[0] == "coordinates" and isinstance(loc[1], int):
                name = (raw.get("coordinates") or [{}])[loc[1]].get("name", f"#{loc[1] + 1}")
                loc[:2] = [f"coordinate {name!r}"]
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"{path}: {': '.join(str(x) for x in loc)}: {message} (got {first.get('input')!r})") \
                from None
        base = path.parent
        job.data.train = base / job.data.train
        if job.data.validation is not None:
            job.data.validation = base / job.data.validation
        try:
            job.model()
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        return job

    def model(self, threads: int | None = None) -> GameModel:
        """The estimator this job describes; `threads` overrides [training] threads."""
        validation = self.data.validation is not None
        return GameModel([c.coordinate(validation) for c in self.coordinates], passes=self.training.passes,
                         response=self.data.response, weight=self.data.weight, offset=self.data.offset,
                         seed=self.training.seed, validate=self.training.validate_,
                         threads=threads or self.training.threads, dtype=self.training.dtype)
