"""Billing: the monthly close (invoices with gap-free numbers) and payment recording.

`reference` and `calculation` are pure; `closer` and `payments` talk to PostgreSQL.
"""


class BillingError(ValueError):
    """Root of every error billing raises; the message names the field or the record."""
