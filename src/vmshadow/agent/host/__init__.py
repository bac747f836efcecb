"""The host's side of the agent that may use the rest of vmshadow.

Unlike the modules one folder up, these are not copied into the guest (the
image builder copies only ``vmshadow/agent/*.py``), so they may import
``vmshadow.domain``: this is where the wire protocol's errors become
vmshadow's own.
"""
