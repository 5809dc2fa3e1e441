"""The scheduler: cron and rate triggers for functions and jobs.

Schedules are parsed by the manifest (``shoal.manifest.schedules``); this package decides when
they fire. ``timing`` is the pure core (next fire, fires in a window, the fire missed while the
daemon was down, DST rules) and ``days`` the calendar half of cron. The ticking loop that sleeps
until the next fire and starts the target sits above these and takes its clock as an argument.
"""

from shoal.scheduler.timing import fires_between, missed_fire, next_fire

__all__ = ["fires_between", "missed_fire", "next_fire"]
