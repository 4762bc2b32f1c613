"""Pure response helpers: the HTTP Date value."""

from __future__ import annotations

import email.utils

from hypothesis import given
from hypothesis import strategies as st

from monoport.wire.responses import http_date


@given(st.floats(min_value=0, max_value=253402300799, allow_nan=False))
def test_http_date_is_the_imf_fixdate_of_its_whole_second(timestamp):
    # email.utils formats the same RFC 9110 date independently
    assert http_date(timestamp) == email.utils.formatdate(int(timestamp), usegmt=True).encode()


def test_http_date_changes_with_the_second_and_not_within_it():
    assert http_date(1_000_000_000.1) == http_date(1_000_000_000.9) == b"Sun, 09 Sep 2001 01:46:40 GMT"
    assert http_date(1_000_000_001.0) == b"Sun, 09 Sep 2001 01:46:41 GMT"
    assert http_date(1_000_000_000.5) == b"Sun, 09 Sep 2001 01:46:40 GMT"  # back again: not stuck on the last one
