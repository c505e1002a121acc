"""How a DeCoNAS run is shown: the report, the one-command demo, search vs random, genotype drawings and
complexity tables (README "How the code is organised"). Needs the ``report`` extra (matplotlib, mmengine);
nothing in the method imports it."""
