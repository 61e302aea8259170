"""``rentgate gateway enroll``: a new gateway turns the landlord's one-time
code into its own identity (docs/enrolment.md, "On the gateway").

One module per job: :mod:`.invitation` reads the code or the QR text,
:mod:`.qr` finds that text with a camera, :mod:`.keys` makes the key pair and
the certificate request, :mod:`.client` asks the server, :mod:`.answer`
checks what it sent back, :mod:`.files` writes the gateway's folder in one
step and :mod:`.cli` runs them in that order."""
