"""The REST API's routes, one router per concern, all under ``/api/v1``.

``transitions.py`` (create, list, show, cancel, decide, stream),
``catalogue.py`` (profiles, shadow images, hosts), ``images.py`` (the image
store: list, show, upload, remove) and ``health.py``; ``api/app.py``
wires them with the middleware and the error handlers.
"""

API = "/api/v1"
