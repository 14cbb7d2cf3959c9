"""jobmatch: personalization signals for job marketplaces."""

__version__ = "0.1.0"
