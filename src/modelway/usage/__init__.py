"""Usage accounting: one record per request, and the ledger that writes them to the store in batches."""

from __future__ import annotations

from .ledger import Ledger
from .records import UsageRecord

__all__ = ["Ledger", "UsageRecord"]
