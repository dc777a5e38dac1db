"""Command-line interface (`kev`)."""
