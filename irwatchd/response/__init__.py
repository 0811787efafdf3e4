"""Response: the severity policy and the actions it runs (block, alert, ticket, forensics)."""
