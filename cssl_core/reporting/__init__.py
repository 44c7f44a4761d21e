"""Reporting helpers shared by the per-run `report` stage (tasks/report.py) and `cssl summary` / `cssl compare`
(flows/): the PNG figures (cssl_core.reporting.figures) and the report's metric tree, written by the one and read
back by the others (cssl_core.reporting.tree); and reports/compare.md, the comparison of strategies x seeds that
`cssl compare` writes (cssl_core.reporting.comparison: its tables, privacy section and figures;
comparison_sanity: the sanity block's flags and the plasticity / stability section; stats: the mean ± sd,
missing-number and table helpers both write with).

Library code, not a stage: it draws and converts what it is given and reads no pipeline files (the comparison
reads an experiment's files through the `RunFiles` it is passed: flows/experiment_files.py reads them through
DVC), so both reports draw alike. Nothing is imported here; matplotlib and scikit-learn are imported only inside
the functions that draw.
"""
