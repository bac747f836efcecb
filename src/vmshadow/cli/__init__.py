"""The ``vmshadow`` command line (Typer + Rich).

Where each command lives:

- ``main.py``: the app (``vmshadow``), ``--version``, ``-h``, completion,
  one-line usage errors; ``doctor`` and ``serve``
- ``images.py``: ``image build``, ``image status``
- ``shadow.py``: ``shadow run``, ``shadow gc``
- ``plan.py``: ``plan``; ``profiles.py``: ``profile list / schema / check``
- ``history.py``: ``history import / ls / rm``; ``predict.py``: ``model train / evaluate``
  (``evaluation.py`` renders the evaluation)
- ``token.py``: ``token show``
- ``transitions.py``: ``launch``, ``resize``, ``attach``, ``ls``, ``show``,
  ``cancel``, through the running service; ``launch.py`` the decision at the
  prompt, ``progress.py`` following a transition live, ``views.py`` the Rich
  renderings of the API's documents, ``apiclient.py`` the REST API's client
- ``checks.py``: checks of what was typed (bad usage: exit 2);
  ``common.py``: consoles, shared options, one-line errors

Kept empty of imports: ``vmshadow.cli.apiclient`` must not load Typer's app.
"""
