"""Layer 2, browser shell: the surgeon's loop (load, Segment, correct, regrade, save) on trame-slicer.

A shell like the Slicer modules: it wires widgets to ``onfh.mrml`` (import, live grading,
saving, training export) and ``onfh.subprocess_runner`` (the model in a child process),
and decides nothing itself. Needs the ``[web]`` extra; ``onfh web`` starts it.
"""
