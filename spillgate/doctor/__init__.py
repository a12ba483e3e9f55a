"""``spillgate doctor``: probe an endpoint (or every route of an alias) and say what is wrong.

- :mod:`.target`: what to probe: a base URL + key + model, or a configured alias's routes (pure);
- :mod:`.types`: the typed vocabulary: a :class:`Probe` and its :class:`ProbeResult`;
- :mod:`.probe`: send one minimal request, capture and classify what came back;
- :mod:`.plan`: which probe comes next, given the results so far (pure, bounded);
- :mod:`.diagnose`: probe results -> a :class:`Diagnosis` with evidence and advice (pure);
- :mod:`.cost`: what the probes cost, from each answer's reported usage (pure);
- :mod:`.runner`: run the plan with a progress callback;
- :mod:`.report`: render the diagnosis as text or JSON;
- :mod:`.command`: the ``doctor`` subcommand.

Nothing is imported here, so registering the subcommand costs the CLI nothing.
"""
