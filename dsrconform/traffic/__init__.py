"""Traffic the framework drives through a lab (bounded in count and time, lab addresses only)."""
