"""One compression run end to end: settings (``settings.py``), the run (``run.py``), its output
folder (``outputs.py``) and its report (``report.py``)."""
