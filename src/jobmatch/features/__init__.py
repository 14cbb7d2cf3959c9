"""Features shared by several systems: id lookups, job x candidate pair features, point-in-time counts."""

from jobmatch.features.activity import ACTIVITY_FEATURES, ActivityIndex, activity_features, counts_before
from jobmatch.features.ids import IdIndex
from jobmatch.features.keys import dense_codes, joint_codes, rows_in
from jobmatch.features.pairs import PAIR_FEATURES, PairFeaturizer

__all__ = ["ACTIVITY_FEATURES", "ActivityIndex", "IdIndex", "PAIR_FEATURES", "PairFeaturizer", "activity_features", "counts_before", "dense_codes", "joint_codes", "rows_in"]
