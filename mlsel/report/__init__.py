"""The published report: the table renderer, figures, and the self-contained HTML page."""
