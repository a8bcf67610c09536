"""Claims x estimates x records -> verdicts: one module per claim kind, registered in `decide.KINDS`."""
