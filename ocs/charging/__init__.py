"""Online charging: quota arithmetic, credit-control operations and the batching engine."""
