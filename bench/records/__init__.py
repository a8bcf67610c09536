"""The result record: its schema, where records are written and read, and the statistics tables use."""
