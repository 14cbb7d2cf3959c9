"""Write the example's data beside this file: a small MovieLens-like ratings table (one row per rating, `liked` =
the user liked the film) drawn from a known GAME model by `jobmatch.game.synthetic.ratings_like`, with a fixed seed.

    python examples/game/make_data.py    # rewrites train.parquet and validation.parquet
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.game.synthetic import ratings_like

HERE = Path(__file__).resolve().parent
TRAIN_ROWS, VALIDATION_ROWS = 10_000, 2_500


def write(directory: Path = HERE) -> None:
    cols = ratings_like(n_users=300, n_items=400, rows=TRAIN_ROWS + VALIDATION_ROWS, n_genres=8, n_occupations=6,
                        seed=7)
    table = pa.table(cols)
    pq.write_table(table.slice(0, TRAIN_ROWS), directory / "train.parquet")
    pq.write_table(table.slice(TRAIN_ROWS), directory / "validation.parquet")


if __name__ == "__main__":
    write()
