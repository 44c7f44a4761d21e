"""What the screen and quality stages (tasks/screen.py, tasks/quality.py) compute with: where a series' files are
(series_files), their Great Expectations suites (expectations: GX is imported inside its functions only, as it
takes seconds) and what their reports share (report: the gate's error, strict-JSON values, failure lines).

Nothing is re-exported here: series_files imports pandas, and a
package __init__ that imported it would make every `cssl_core.quality.*` import pay for it. The cohorts'
settings themselves (params.yaml `quality`) are read by cssl_core/config/quality.py; the per-slice statistics
by cssl_core/quality_stats.py.
"""
