"""``date_time``: today's date and time in a time zone, and dates a number of days away.

Small models do not know the date and count days badly; this tool does both exactly.

Example:
    >>> from datetime import datetime, timezone
    >>> from appkit.tools.clock import date_time_tool
    >>> t = date_time_tool(now=lambda: datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    >>> t.invoke({"timezone": "UTC", "days_from_today": 30})
    'Now: 2026-03-01 12:00 (Sunday), time zone UTC. 30 days from today: 2026-03-31 (Tuesday).'
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.tools import BaseTool, StructuredTool, ToolException

MAX_DAYS = 365_000


def date_time_tool(now: Callable[[], datetime] | None = None) -> BaseTool:
    """The ``date_time`` tool.

    Args:
        now: returns the current time (aware); default the system clock.
    """
    clock = now or (lambda: datetime.now(timezone.utc))

    def date_time(timezone: str = "UTC", days_from_today: int = 0) -> str:
        """Tell the current date, weekday and time in an IANA time zone such as 'Europe/Paris',
        and the date a number of days from today (negative for the past)."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ToolException(f"unknown time zone '{timezone}'; use an IANA name such as "
                                "'UTC' or 'Europe/Paris'") from exc
        if abs(days_from_today) > MAX_DAYS:
            raise ToolException(f"days_from_today must be within ±{MAX_DAYS}")
        current = clock().astimezone(zone)
        text = f"Now: {current:%Y-%m-%d %H:%M} ({current:%A}), time zone {timezone}."
        if days_from_today:
            other = current + timedelta(days=days_from_today)
            text += f" {days_from_today} days from today: {other:%Y-%m-%d} ({other:%A})."
        return text

    return StructuredTool.from_function(date_time, handle_tool_error=True)


FACTORIES = {"date_time": lambda ctx: date_time_tool(ctx.now)}
