"""Built-in demo data: synthetic phantom chest CT (phantom.py) and the real NSCLC series (nsclc.py), as DICOM.

SOURCES are the values of `data.demo.<cohort>.source` in params.yaml; they are here, not in tasks/demo_data.py,
so that the whole-params check (cssl_core.config) reads them without importing tasks/ or a generator.
"""

SOURCES = ("phantom", "nsclc")
