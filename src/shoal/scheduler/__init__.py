"""The scheduler: cron and rate triggers for functions and jobs.

Schedules are parsed by the manifest (``shoal.manifest.schedules``); this package decides when
they fire. ``timing`` is the pure core (next fire, fires in a window, the fire missed while the
daemon was down, DST rules) and ``days`` the calendar half of cron. ``ticking`` is the loop that
sleeps until the next fire on an injected clock and calls the target; ``jobs`` decides what a due
run does (allow / forbid / replace, outcomes, retries) and ``launching`` runs a job's command as
a one-off instance through a runtime, with a timeout and a kept history.
"""

from shoal.scheduler.timing import fires_between, missed_fire, next_fire

__all__ = ["fires_between", "missed_fire", "next_fire"]
