"""Camera snapshots at the server (docs/cameras-privacy.md): the JPEG of a
tailgating or an unidentified entry, uploaded by the gateway over HTTP and
accepted only when an event of that gateway names its SHA-256; shown to
administrators, the coordinators of the building's grid and police of its
jurisdiction, every view audited; deleted by the retention job."""
