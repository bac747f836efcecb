"""Running vmshadow as a service: the event feed, Prometheus metrics, logs and webhooks.

``feed.py`` reads the event log once for the whole process and hands each new
event to its subscribers: ``metrics.py`` (``/metrics``) and ``webhooks.py``
(signed POSTs to the operator's URL). ``logs.py`` sets the log level and
format, uvicorn's access log included.
"""
