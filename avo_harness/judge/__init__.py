"""The judge: everything a verdict rests on, and the walls around the accused.

Pytest-free. The parent (this package, imported by the collector) owns the inputs,
the round schedule, the clock and every output it checks; the candidate runs in a
child process (``worker``) that only imports it and calls it. Read in this order:

- ``scan``: the static filter over the candidate's source, run by the parent;
- ``confine``: the OS sandbox the child runs in (bubblewrap, Landlock);
- ``sandbox``: the parent's side of the child, and the wire protocol;
- ``arena``: the shared memory where the parent writes inputs and reads outputs;
- ``worker`` and ``lockdown``: the child, and its in-process second line;
- ``timer``: the parent's rounds and clock; ``roofline``: the physical floor;
- ``machine``: the machine's ceilings and protocol cost, measured by the parent, and the
  timed check held to them (the collector's and ``paired``'s alike);
- ``checker``: the verdict on an output;
- ``paired``: two candidates timed interleaved on one device, for the commit rule.
"""
