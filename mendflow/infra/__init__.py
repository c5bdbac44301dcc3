"""Infrastructure under the tasks: subprocess and git runners, the state layout, locks,
the mission registry, timeouts, retries, caching, budgets and Prefect API helpers.

It imports only :mod:`mendflow.core`.
"""
