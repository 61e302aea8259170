"""Reconciliation: who actually enters (evidence) against who is registered
(the record), as cases with a lifecycle, unit grades and the four rates."""
