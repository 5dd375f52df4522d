"""Rendering: reads run records only, writes Markdown and PNG under reports/out/<suite>/."""
