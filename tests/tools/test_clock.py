from __future__ import annotations

from datetime import datetime, timezone

from appkit.tools.clock import date_time_tool

FIXED = datetime(2026, 2, 27, 23, 30, tzinfo=timezone.utc)


def test_now_in_a_time_zone_and_days_ahead() -> None:
    tool = date_time_tool(now=lambda: FIXED)
    assert tool.invoke({}) == "Now: 2026-02-27 23:30 (Friday), time zone UTC."
    text = tool.invoke({"timezone": "Europe/Paris", "days_from_today": 2})
    assert text.startswith("Now: 2026-02-28 00:30 (Saturday), time zone Europe/Paris.")
    assert text.endswith("2 days from today: 2026-03-02 (Monday).")


def test_unknown_time_zone_is_a_readable_error() -> None:
    tool = date_time_tool(now=lambda: FIXED)
    reply = tool.invoke({"type": "tool_call", "id": "1", "name": "date_time",
                         "args": {"timezone": "Mars/Olympus"}})
    assert reply.status == "error" and "unknown time zone 'Mars/Olympus'" in reply.content
