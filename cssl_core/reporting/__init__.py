"""Reporting helpers shared by the per-run `report` stage (tasks/report.py) and `cssl summary` / `cssl compare`
(flows/): the PNG figures (cssl_core.reporting.figures) and the report's metric tree, written by the one and read
back by the others (cssl_core.reporting.tree).

Library code, not a stage: it draws and converts what it is given and reads no pipeline files, so both reports
draw alike. Nothing is imported here; matplotlib and scikit-learn are imported only inside the functions that draw.
"""
