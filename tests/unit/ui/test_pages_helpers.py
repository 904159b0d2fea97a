"""Pure parts of the console: DSA register warnings and the server-drawn SVG chart."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from broker.ui.chart import Series, line_chart
from broker.ui.ig_pages import dsa_warnings

TODAY = date(2026, 11, 21)


def test_dsa_warnings_name_expiry_and_review() -> None:
    far = TODAY + timedelta(days=400)
    assert dsa_warnings(date(2026, 1, 1), far, far, TODAY) == []
    assert dsa_warnings(date(2026, 1, 1), TODAY + timedelta(days=10), far, TODAY) == ["expires in 10 days"]
    assert dsa_warnings(date(2025, 1, 1), date(2026, 1, 1), far, TODAY) == ["expired on 2026-01-01"]
    assert dsa_warnings(date(2026, 1, 1), far, date(2026, 11, 1), TODAY) == [
        "review overdue since 2026-11-01"]
    assert dsa_warnings(date(2026, 1, 1), far, TODAY + timedelta(days=5), TODAY) == ["review due in 5 days"]
    assert dsa_warnings(TODAY + timedelta(days=1), far, far, TODAY) == ["not in force until 2026-11-22"]


def test_chart_is_labelled_svg_and_escapes_names() -> None:
    t0 = datetime(2026, 11, 21, 14, 0, tzinfo=UTC)
    series = [Series("q<script>", [(t0, 0.0), (t0 + timedelta(minutes=1), 4.0)]),
              Series("other", [(t0, 1.0)])]
    svg = str(line_chart("k", "Depth <now>", series, "messages"))
    assert svg.startswith('<svg') and 'role="img"' in svg and 'aria-labelledby="t-k d-k"' in svg
    assert "<script>" not in svg and "q&lt;script&gt;" in svg and "Depth &lt;now&gt;" in svg
    assert svg.count("<polyline") == 2 and "latest 4 messages" in svg
    empty = str(line_chart("e", "Nothing", [], "messages"))
    assert "no samples yet" in empty and "<polyline" not in empty
