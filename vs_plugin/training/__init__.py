"""Training: the epoch loop (``loop.py``), step functions (``steps.py``), seeds (``reproducibility.py``)."""
