"""The audit log: every police request, the size of every answer, every
view of a full identity number and every purge, appended to a hash chain
with signed checkpoints that anyone can verify (docs/audit.md)."""
