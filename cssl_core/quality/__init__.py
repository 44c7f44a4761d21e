"""What the screen and quality stages (tasks/screen.py, tasks/quality.py) compute with: where a series' files are
(series_files) and what their reports share (report: the severities, the plain `Outcome` of a rule, the gate's
error, strict-JSON values, failure lines). The Great Expectations suites themselves, their validation and GX's HTML
pages are in the adapter tasks/gx_expectations.py: the library imports no validation framework.

Nothing is re-exported here: series_files imports pandas, and a
package __init__ that imported it would make every `cssl_core.quality.*` import pay for it. The cohorts'
settings themselves (params.yaml `quality`) are read by cssl_core/config/quality.py; the per-slice statistics
by cssl_core/quality_stats.py.
"""
