"""Problem reports from a plate's public page (a hazard, overcrowding, a
suspicious situation): checked, rate-limited, stored with an optional photo,
and turned into a grid task (上报)."""
