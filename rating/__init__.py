"""Pure rating core: money, calendars, tariff catalog and the vectorized rater.

Nothing in this package does I/O or reads the clock; time comes in as arguments.
"""


class RatingError(ValueError):
    """Root of every error the rating core raises (bad catalog, bad input)."""
