"""``pytest --avo-evolve``: the evolutionary search over a task's candidates.

loop.py drives it; lineage.py stores it; evaluate.py runs one candidate through
pytest in a fresh process; fitness.py turns that run's report into a score;
operators/ propose new candidates; progress.py shows it.
"""
