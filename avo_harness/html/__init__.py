"""The HTML report of a search (``pytest --avo-html DIR``).

``model`` reads what the page shows out of the lineage, ``plots`` draws it with
matplotlib, and ``render`` writes one self-contained ``index.html`` (images inlined),
so the page opens from a file with no network.
"""
