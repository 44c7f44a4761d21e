"""Reporting helpers shared by the per-run `report` stage (tasks/report.py) and `cssl compare`
(flows/compare_report.py): the PNG figures (cssl_core.reporting.figures).

Library code, not a stage: it draws what it is given and reads no pipeline paths, so both reports draw alike.
Nothing is imported here; matplotlib and scikit-learn are imported only inside the functions that draw.
"""
