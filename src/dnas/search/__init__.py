"""The differentiable search: budget losses, the Lightning search module and its callbacks."""
