"""The cost-guard: the budget gate every command that costs money passes through."""
