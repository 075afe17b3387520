"""Full-page screens and dialogs of the dashboard."""
