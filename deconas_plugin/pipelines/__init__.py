"""What users run end to end, each step a project entry point in a child process: the one-command demo
(``demo.py``, ``tools/demo.py``) and search vs random (``search_vs_random.py``, ``tools/search_vs_random.py``),
both through one runner (``runs.py``).
They read the method and show their results with ``reporting/``; nothing in the method or the reporting
imports them."""
