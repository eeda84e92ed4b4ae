"""The scheduling rules as pure decisions: no SQL, no I/O, no clock of their own.

The store asks a rule what follows from a state change, then writes it in the same
transaction. docs/architecture.md maps every rule of docs/scheduling-rules.md to
its module here.
"""
