"""Reports: verdicts, measured tables, plots and provenance as static Markdown and HTML."""
