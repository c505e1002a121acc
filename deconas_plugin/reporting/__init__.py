"""How a DeCoNAS run is shown, and nothing else: the report (``report.py``, from ``metrics.py``,
``figures.py`` and ``markdown.py``), genotype drawings (``draw.py``) and complexity tables
(``complexity_table.py``). Needs the ``report`` extra (matplotlib, mmengine); nothing in the method
imports it."""
