"""Where a series' files are (series_files), used by the screen and quality stages (tasks/screen.py,
tasks/quality.py); their Great Expectations suites live in tasks/expectations.py (cssl_core imports no GX).

Nothing is re-exported here: series_files imports pandas, and a
package __init__ that imported it would make every `cssl_core.quality.*` import pay for it. The cohorts'
settings themselves (params.yaml `quality`) are read by cssl_core/config/quality.py; the per-slice statistics
by cssl_core/quality_stats.py.
"""
