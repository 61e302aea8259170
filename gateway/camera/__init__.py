"""The gateway's side of the door cameras: correlating crossings with grants
(``correlate``), the snapshot spool (``spool``) and its uploader (``uploads``),
and the ``[cameras]`` settings (``config``). docs/cameras-gateway.md."""
