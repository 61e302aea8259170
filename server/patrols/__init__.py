"""Patrols (巡查): the coordinator's view of a unit (what the record says,
what the doors saw, what is open) and recording a visit, whose problems
become tasks."""
