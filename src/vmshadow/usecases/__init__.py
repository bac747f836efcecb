"""What a user asks for outside the controller: ``vmshadow plan`` (``plan.py``),
``vmshadow shadow run`` (``shadowrun.py``) and the closed loop's full VM at
full load (``fullload.py``). Each opens the host through the ``Connect`` its
caller gives (``hypervisor/port.py``) and runs its phases through
``shadow.profiling.run_profile``, as the controller does."""
