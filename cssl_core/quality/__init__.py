"""The data-quality gates' library half: the Great Expectations suites (expectations) and where a series'
files are (series_files), used by the screen and quality stages (tasks/screen.py, tasks/quality.py).

Nothing is re-exported here: expectations imports pandas (and great_expectations inside its functions), and a
package __init__ that imported it would make every `cssl_core.quality.*` import pay for it. The cohorts'
settings themselves (params.yaml `quality`) are read by cssl_core/config/quality.py; the per-slice statistics
by cssl_core/quality_stats.py.
"""
