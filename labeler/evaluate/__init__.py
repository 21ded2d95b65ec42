"""Agreement of labels with reference judgments (metrics), the files compared (inputs), and the
HTML/Markdown report (report)."""
