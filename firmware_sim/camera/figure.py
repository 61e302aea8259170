"""A walking person drawn with OpenCV's primitives: head, torso, arms and
legs in their clothes' colours, the limbs swinging with the gait, seen from
the front, the back or the side depending on which way they walk."""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from firmware_sim.camera.script import Colour, Look

Image = NDArray[np.uint8]
# Metres per step: the gait's phase turns once every two steps.
_STEP_M = 0.7


def _p(x: float, y: float) -> tuple[int, int]:
    return (int(round(x)), int(round(y)))


def _limb(img: Image, a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], colour: Colour,
          thickness: float) -> None:
    th = max(1, int(round(thickness)))
    cv2.line(img, _p(*a), _p(*b), colour, th, cv2.LINE_AA)
    cv2.line(img, _p(*b), _p(*c), colour, th, cv2.LINE_AA)


def _shade(colour: Colour, f: float) -> Colour:
    return (min(255, int(colour[0] * f)), min(255, int(colour[1] * f)), min(255, int(colour[2] * f)))


def draw_shadow(img: Image, x: float, y: float, h: float) -> None:
    """A soft dark patch on the floor under the feet."""
    rx, ry = int(0.16 * h) + 1, int(0.035 * h) + 1
    x0, y0 = max(0, int(x) - rx), max(0, int(y) - ry)
    x1, y1 = min(img.shape[1], int(x) + rx + 1), min(img.shape[0], int(y) + ry + 1)
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.ellipse(mask, _p(x - x0, y - y0), (rx, ry), 0, 0, 360, 255, -1)
    roi[mask > 0] = (roi[mask > 0] * 0.7).astype(np.uint8)


def draw_person(img: Image, x: float, y: float, h: float, look: Look, walked_m: float,
                heading: tuple[float, float], moving: bool) -> None:
    """Draw a person standing on foot point (x, y), ``h`` pixels tall, having
    walked ``walked_m`` metres, walking along ``heading`` (unit vector in the
    picture; down means towards the camera)."""
    ux, uy = heading
    side = min(1.0, abs(ux))  # 1: seen from the side, 0: from the front or back
    facing_camera = uy >= 0
    w = 1.0 - 0.45 * side  # the body looks narrower from the side
    b = look.build
    phase = 2 * math.pi * walked_m / (2 * _STEP_M) if moving else 0.0
    swing = math.sin(phase) if moving else 0.0
    lift = max(0.0, math.cos(phase)) if moving else 0.0
    sign = 1.0 if ux >= 0 else -1.0

    head_r = 0.062 * h
    head_y = y - h + head_r
    neck_y = head_y + head_r * 1.1
    shoulder_y = y - 0.81 * h
    hip_y = y - 0.47 * h
    knee_y = y - 0.25 * h
    sw = 0.125 * h * b * w
    hw = 0.095 * h * b * w

    # Legs: in the side view they scissor along the way of walking, from the
    # front the stepping foot comes up and forward (lower in the picture).
    leg_t = 0.075 * h * b
    for k, s in ((0, 1.0), (1, -1.0)):
        hip_x = x + s * 0.05 * h * b * w
        fx = hip_x + sign * s * swing * 0.17 * h * side
        fy = y - (0.05 * h * lift if (k == 0) == (swing > 0) else 0.0) + s * swing * 0.03 * h * (1 - side)
        kx = (hip_x + fx) / 2 + sign * 0.03 * h * side * abs(swing)
        ky = knee_y - 0.02 * h * abs(swing)
        colour = look.trousers if k == 0 else _shade(look.trousers, 0.8)
        _limb(img, (hip_x, hip_y), (kx, ky), (fx, fy - 0.02 * h), colour, leg_t)
        cv2.ellipse(img, _p(fx + sign * 0.02 * h * side, fy - 0.015 * h),
                    (max(1, int(0.045 * h * (0.6 + 0.6 * side))), max(1, int(0.02 * h))), 0, 0, 360, look.shoes,
                    -1, cv2.LINE_AA)

    # Torso: shoulders to hips.
    torso = np.array([_p(x - sw, shoulder_y), _p(x + sw, shoulder_y), _p(x + hw, hip_y + 0.03 * h),
                      _p(x - hw, hip_y + 0.03 * h)], np.int32)
    cv2.fillConvexPoly(img, torso, look.shirt, cv2.LINE_AA)
    cv2.ellipse(img, _p(x, shoulder_y + 0.01 * h), (max(1, int(sw)), max(1, int(0.035 * h))), 0, 180, 360,
                look.shirt, -1, cv2.LINE_AA)
    if look.bag:
        bx = x - sign * (sw + 0.02 * h) if side > 0.5 else x + sw * 0.9
        cv2.rectangle(img, _p(bx - 0.04 * h, hip_y - 0.05 * h), _p(bx + 0.04 * h, hip_y + 0.08 * h),
                      _shade(look.trousers, 0.6), -1, cv2.LINE_AA)

    # Arms swing against the legs.
    arm_t = 0.055 * h * b
    for k, s in ((0, 1.0), (1, -1.0)):
        shx = x + s * (sw - arm_t * 0.4)
        hx = shx + s * 0.02 * h * (1 - side) - sign * s * swing * 0.13 * h * side
        hy = y - 0.43 * h - s * swing * 0.03 * h * (1 - side)
        ex = (shx + hx) / 2 - sign * s * swing * 0.02 * h * side
        ey = (shoulder_y + hy) / 2
        colour = _shade(look.shirt, 0.85) if k == 0 else look.shirt
        _limb(img, (shx, shoulder_y + arm_t * 0.5), (ex, ey), (hx, hy), colour, arm_t)
        cv2.circle(img, _p(hx, hy + 0.01 * h), max(1, int(0.03 * h)), look.skin, -1, cv2.LINE_AA)

    # Neck and head: the face towards the camera, the back of the head away.
    cv2.line(img, _p(x, neck_y), _p(x, shoulder_y), look.skin, max(1, int(0.05 * h)), cv2.LINE_AA)
    axes = (max(1, int(head_r * 0.85)), max(1, int(head_r)))
    if facing_camera or side > 0.7:
        cv2.ellipse(img, _p(x, head_y), axes, 0, 0, 360, look.skin, -1, cv2.LINE_AA)
        cv2.ellipse(img, _p(x, head_y - head_r * 0.25), (axes[0] + 1, int(axes[1] * 0.85)), 0, 180, 360,
                    look.hair, -1, cv2.LINE_AA)
        if facing_camera and side < 0.7 and h > 60:
            for ex_ in (-0.3, 0.3):
                cv2.circle(img, _p(x + ex_ * head_r, head_y + head_r * 0.05), max(1, int(h * 0.006)),
                           (40, 40, 40), -1)
    else:
        cv2.ellipse(img, _p(x, head_y), axes, 0, 0, 360, look.hair, -1, cv2.LINE_AA)
