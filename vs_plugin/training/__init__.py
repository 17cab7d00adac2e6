"""Training: the one loop (``fit.py``, over ``loop.py``'s epoch), the shared recipes (``recipes.py``:
cross-entropy, CE + KD), step functions (``steps.py``), seeds (``reproducibility.py``)."""
