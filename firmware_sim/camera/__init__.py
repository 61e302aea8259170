"""A synthetic door camera: a rendered doorway with people walking through it
and the ground truth of who crossed the door line when (for the camera
pipeline's tests and benchmarks), and the same scene served live as MJPEG
over HTTP (for the gateway's camera adapter and the demo).

:mod:`.script` says who walks where and when and what the truth is,
:mod:`.render` turns a script into frames, :mod:`.video` writes a video file
with its truth beside it, :mod:`.live` and :mod:`.mjpeg` serve a scene in real
time, :mod:`.follow` walks people in after the swipes a building simulator
logs. See docs/camera-sim.md.
"""
