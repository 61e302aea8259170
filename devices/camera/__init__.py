"""People counting at a door from a camera, with no GPU and no model
downloaded at run time (docs/cameras.md).

Pure image functions and state machines, no I/O but for ``capture`` (which
opens the source): motion on a downscaled frame every frame (``motion``), a
person stage on moving regions only at a lower rate (``detect``), tracks
across frames (``track``), crossings of a door line with their direction
(``geometry``, ``pipeline``) and the camera's health (``health``)."""
