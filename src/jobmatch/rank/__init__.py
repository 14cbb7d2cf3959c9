"""Learning to rank for job search (002 §4.2): search-result features and a deep-and-wide listwise ranker with an
optional frozen user-vector tower."""

from jobmatch.rank.features import CATEGORICAL_FEATURES, DENSE_FEATURES, SearchFeaturizer, hashed
from jobmatch.rank.model import ListwiseRanker, RankerParams

__all__ = ["CATEGORICAL_FEATURES", "DENSE_FEATURES", "ListwiseRanker", "RankerParams", "SearchFeaturizer", "hashed"]
