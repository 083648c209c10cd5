"""Reports: the JSON contract, figures, tables and the files of a report directory."""

from vcal_cli.reports.schema import SCHEMA_VERSION, AuditReport, read_report
from vcal_cli.reports.writer import REPORT_FILES, write_report

__all__ = ["AuditReport", "SCHEMA_VERSION", "REPORT_FILES", "read_report", "write_report"]
