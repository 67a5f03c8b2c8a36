"""The agentic variation operator (``--avo-operator anthropic``): a Claude agent that reads
the lineage and the knowledge base, drafts kernels, evaluates them with the loop's own
evaluation, repairs them, and submits one that passed.

Modules: ``operator`` (one agent session per ``propose``), ``session`` (the tool loop),
``tools`` (what the agent may do), ``views`` (lineage and reports as compact text),
``knowledge`` (the markdown knowledge base), ``supervisor`` (stagnation and cycling),
``client`` (API calls and retries), ``budget`` and ``pricing`` (what it may spend),
``prompts``, ``settings``, and ``fake_server`` (a scripted local Messages API for tests and
offline runs). Only ``client`` imports the ``anthropic`` SDK, and only when an operator is built.
"""
