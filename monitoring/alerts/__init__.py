"""Alert rules and auto-rollback, one module per job.

`rules` reads and writes the rules (the API's services and selectors, and the rules as the evaluator reads them),
`history` keeps the per-second traffic totals a rule's window is summed from, `firing` records an alert and rolls a
release back, and `evaluation` is the loop that judges the rules every second (its docstring says how several web
processes share the work).
"""
