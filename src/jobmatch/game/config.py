"""`game.toml`: a GAME training job on any Parquet data with the right shape.

    [data]
    train = "train.parquet"            # paths are relative to the TOML file
    validation = "validation.parquet"  # optional; AUC after every coordinate update
    response = "clicked"               # 0/1 column
    weight = "w"                       # optional
    offset = "prior_score"             # optional

    [training]
    passes = 2
    seed = 0

    [[coordinates]]
    name = "global"
    type = "fixed"
    features = ["f1", "f2"]
    l2 = 1.0

    [[coordinates]]
    name = "per_user"
    type = "random"
    entity = "user_id"
    features = ["item_f1"]
    l2 = 2.0
    min_samples = 3
    max_samples = 1000
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobmatch.game.model import Coordinate, GameModel


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


class _Coordinate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    features: list[str]
    l2: float = Field(1.0, ge=0)
    entity: str | None = None
    min_samples: int = Field(1, ge=1)
    max_samples: int | None = Field(None, ge=1)
    regularize_intercept: bool | None = None


class GameJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: _Data
    training: _Training = _Training()
    coordinates: list[_Coordinate] = Field(min_length=1)

    @classmethod
    def from_toml(cls, path: str | Path) -> GameJob:
        path = Path(path)
        try:
            job = cls.model_validate(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e})") from None
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"{path}: {where}: {first['msg']} (got {first.get('input')!r})") from None
        base = path.parent
        job.data.train = base / job.data.train
        if job.data.validation is not None:
            job.data.validation = base / job.data.validation
        return job

    def model(self) -> GameModel:
        coords = [Coordinate(c.name, c.type, tuple(c.features), c.l2, c.entity, c.min_samples, c.max_samples,
                             c.regularize_intercept) for c in self.coordinates]  # type: ignore[arg-type]
        return GameModel(coords, passes=self.training.passes, response=self.data.response, weight=self.data.weight,
                         offset=self.data.offset, seed=self.training.seed)
