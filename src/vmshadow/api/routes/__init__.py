"""The REST API's routes, one router per concern, all under ``/api/v1``.

``transitions.py`` (create, list, show, cancel, decide, stream),
``catalogue.py`` (profiles, images, hosts) and ``health.py``; ``api/app.py``
wires them with the middleware and the error handlers.
"""

API = "/api/v1"
