"""Timestamp formatting shared by the image formats and their inputs (pure, no I/O).

Public API::

    rfc3339(epoch) -> str      # "1970-01-01T00:00:00+00:00"

Kept outside ``image_builder`` so that every layer (OCI inputs, EIF format, pipelines) can use it
without importing a higher layer (see docs/architecture.md, "image_builder layers").
"""

from __future__ import annotations

import datetime


def rfc3339(epoch: int) -> str:
    """``epoch`` (whole seconds since 1970-01-01T00:00:00Z) as an RFC 3339 UTC date-time.

    The form is what Rust chrono's ``DateTime<Utc>::to_rfc3339`` prints for a whole-second time, and
    what nitro-cli writes into the EIF metadata ``BuildTime`` (shared/reference/eif-nitro.md §1.6;
    chrono ``src/datetime/mod.rs`` ``to_rfc3339``): ``YYYY-MM-DDTHH:MM:SS+00:00`` (offset, not ``Z``;
    no fraction). Python's ``datetime.isoformat`` prints the same for a UTC-aware, microsecond-0 time.

    Raises:
        OverflowError, OSError, ValueError: ``epoch`` outside the platform's representable range
            (callers validate ``SOURCE_DATE_EPOCH`` first, teeform.fsutil.source_date_epoch).
    """
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()
