"""The in-guest agent and its wire protocol, shared by the host and the guest.

Everything in this package is standard-library-only Python 3.11: the image
builder copies these files verbatim into a guest that has nothing but
Debian's python3.11, busybox, stress-ng and fio. Do not import anything from
``vmshadow`` outside ``vmshadow.agent`` here, and no ``pathlib``: in Python
3.11 it imports ``urllib``, which the image's trimmed standard library drops
(``tests/unit/agent`` runs the agent under exactly those restrictions).

The one exception is ``agent/host/``: host-only code the builder does not
copy (it copies ``agent/*.py``), where the protocol's errors become
vmshadow's ``AgentError``.
"""
