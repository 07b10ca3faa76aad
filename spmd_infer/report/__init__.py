"""End-of-job reporting: a bounded per-step timeline, the metrics built from it, and the HTML report."""

from .metrics import job_metrics, summary_lines, write_run_report
from .timeline import Timeline

__all__ = ["Timeline", "job_metrics", "summary_lines", "write_run_report"]
