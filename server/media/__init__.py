"""Uploaded photos (patrols, problem reports): checked by their bytes,
re-encoded without metadata, stored under their SHA-256 in the media folder,
served to the coordinators who may work their unit."""
