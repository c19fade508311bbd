"""The workflow engine: decisions on tickets, reactions to events, reviews, results, the merge
gate, and the status comment."""
