"""The web UI: server-rendered pages (``pages.py``) over the same service as the REST API.

``views.py`` works out what the templates show; ``templates/`` (Jinja2) and
``static/`` (the scripts, the style sheet and the vendored uPlot) ship with
the package.
"""
