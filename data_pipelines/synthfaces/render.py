"""SynthFaces renderer: a Face (labels + style) -> an RGB uint8 image of any size.

Everything is laid out in normalised canvas coordinates, drawn with anti-aliased OpenCV primitives
on a supersampled canvas, then rolled, lit and area-downsampled, so the same face renders
consistently at 64 and 256 pixels. Feature positions are in face units (u, v): u in [-1, 1] across
the face, v in [-1, 1] from the crown to the chin.
"""
from __future__ import annotations

import colorsys
import functools
import math

import cv2
import numpy as np

from data_pipelines.synthfaces.attributes import EXPRESSIONS, Face

_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate primitives
_ONE = 1 << _SHIFT

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 125], [198, 134, 90],
                       [161, 102, 62], [112, 72, 45]], np.float32)
HAIR_RGB = np.array([[28, 24, 24], [96, 60, 34], [222, 190, 120], [170, 70, 30], [170, 170, 172]],
                    np.float32)
EYE_RGB = np.array([[70, 45, 25], [40, 90, 150], [60, 110, 60], [110, 80, 40]], np.float32)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


class _Canvas:
    """Normalised-coordinate drawing on an RGB float canvas (y down, [0, 1] across).

    Translucent primitives are blended inside their bounding box only: a full-canvas copy per
    primitive would dominate the render time at 512 pixels.
    """

    def __init__(self, size: int, background: np.ndarray):
        self.size = size
        self.img = background

    def _fixed(self, pts) -> np.ndarray:
        return np.round(np.asarray(pts, np.float64) * (self.size * _ONE)).astype(np.int32).reshape(-1, 2)

    def _px(self, r: float) -> int:
        return max(1, int(round(r * self.size)))

    def poly(self, pts, colour, alpha: float = 1.0) -> None:
        arr = self._fixed(pts)
        self._draw(arr, 1, alpha, lambda im, o: cv2.fillPoly(im, [arr - o], colour, cv2.LINE_AA, _SHIFT))

    def line(self, pts, colour, width: float, closed: bool = False, alpha: float = 1.0) -> None:
        arr, t = self._fixed(pts), self._px(width)
        self._draw(arr, t, alpha,
                   lambda im, o: cv2.polylines(im, [arr - o], closed, colour, t, cv2.LINE_AA, _SHIFT))

    def ellipse(self, cx, cy, ax, ay, colour, angle: float = 0.0, width: float | None = None,
                alpha: float = 1.0) -> None:
        c, axes = self._fixed([cx, cy])[0], self._fixed([ax, ay])[0]
        r = int(max(axes)) + 1
        t = -1 if width is None else self._px(width)
        box = np.array([c - r, c + r])
        self._draw(box, max(t, 1), alpha, lambda im, o: cv2.ellipse(
            im, tuple(int(v) for v in c - o), tuple(int(v) for v in axes), angle, 0, 360, colour, t,
            cv2.LINE_AA, _SHIFT))

    def _draw(self, fixed_pts: np.ndarray, thickness: int, alpha: float, draw) -> None:
        if alpha >= 1.0:
            draw(self.img, np.zeros(2, np.int32))
            return
        pad = thickness + 2
        lo = np.maximum((fixed_pts.min(0) >> _SHIFT) - pad, 0)
        hi = np.minimum((fixed_pts.max(0) >> _SHIFT) + pad + 1, self.size)
        if np.any(hi <= lo):
            return
        roi = self.img[lo[1]:hi[1], lo[0]:hi[0]]
        layer = roi.copy()
        draw(layer, (lo << _SHIFT).astype(np.int32))
        cv2.addWeighted(layer, alpha, roi, 1.0 - alpha, 0.0, dst=roi)


def _curve(p0, p1, p2, n: int = 12):
    """Quadratic Bezier through control point p1."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return [tuple(p) for p in (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2]


def _arc(p0, mid, p2, n: int = 12):
    """Quadratic Bezier from p0 to p2 passing through `mid` at its halfway point."""
    control = 2 * np.asarray(mid, np.float64) - 0.5 * (np.asarray(p0, np.float64) + np.asarray(p2, np.float64))
    return _curve(p0, control, p2, n)


def _background(work: int, s: dict) -> np.ndarray:
    size = max(32, work // 4)  # smooth patterns: compute small, upsample
    yy, xx = _grid(size)
    a = np.array(_hsv(s["bg_hue_a"], 0.15 + 0.5 * s["bg_hue_b"], 0.35 + 0.6 * s["bg_freq"]), np.float32)
    b = np.array(_hsv(s["bg_hue_b"], 0.2 + 0.6 * s["bg_angle"], 0.25 + 0.7 * s["bg_hue_a"]), np.float32)
    ang = 2 * math.pi * s["bg_angle"]
    proj = xx * math.cos(ang) + yy * math.sin(ang)
    kind = int(s["bg_kind"] * 4)
    if kind == 0:  # flat studio backdrop
        t = np.zeros_like(xx)
    elif kind == 1:  # linear gradient
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    elif kind == 2:  # stripes / wallpaper
        t = 0.5 + 0.5 * np.sin(proj * (6 + 20 * s["bg_freq"]) * math.pi)
    else:  # soft bokeh-like blobs
        t = 0.5 + 0.25 * (np.sin(xx * 9 * (1 + s["bg_freq"])) + np.cos(yy * 7 * (1 + s["bg_angle"])))
    small = (a * (1 - t[..., None]) + b * t[..., None]).astype(np.float32)
    return cv2.resize(small, (work, work), interpolation=cv2.INTER_LINEAR)


def render(face: Face, size: int) -> np.ndarray:
    """Renders `face` as a (size, size, 3) uint8 RGB image; deterministic in (face, size)."""
    if size < 16:
        raise ValueError(f"SynthFaces renders at >= 16 pixels, got {size}")
    work = size * max(2, math.ceil(256 / size))
    s, at = face.style, face.attributes
    expression = EXPRESSIONS[face.expression]
    cv = _Canvas(work, _background(work, s))

    # --- geometry: scale, placement, pose ---------------------------------------------------------
    a = 0.19 + 0.07 * s["scale"]                   # face half-width
    b = a * (1.22 + 0.18 * s["aspect"])            # face half-height
    cx = 0.5 + 0.08 * (s["centre_x"] - 0.5)
    cy = 0.54 + 0.06 * (s["centre_y"] - 0.5)
    yaw = 0.35 * (s["yaw"] - 0.5)                  # inner features slide sideways
    male = at["male"]

    def P(u, v, inner=True):
        return cx + (u + (yaw * (1 - 0.5 * abs(v)) if inner else 0.0)) * a, cy + v * b

    skin = SKIN_TONES[min(int(s["skin_tone"] * len(SKIN_TONES)), len(SKIN_TONES) - 1)]
    skin = skin * (0.92 + 0.16 * s["skin_jitter"])
    if not at["young"]:
        skin = skin * 0.94 + skin.mean() * 0.04
    skin = tuple(float(c) for c in np.clip(skin, 0, 255))
    skin_dark = tuple(0.78 * c for c in skin)
    hair = HAIR_RGB[face.hair_colour] * (0.85 + 0.3 * s["hair_shade"])
    hair = tuple(float(c) for c in np.clip(hair, 0, 255))
    hair_dark = tuple(0.7 * c for c in hair)

    # --- hair behind the head and shoulders ---------------------------------------------------
    long_hair = s["hair_length"] < (0.12 if male else 0.8)
    hair_end = (1.55 if long_hair else 0.15) + 0.3 * s["hair_volume"]
    wave_amp = 0.06 if at["wavy_hair"] else 0.0
    wave_freq = 7 + 5 * s["hair_wave_freq"]
    vol = 1.1 + 0.12 * s["hair_volume"] + (0.06 if at["wavy_hair"] else 0.0)

    phase = 6.28 * s["hair_wave_phase"]

    def hair_arc(n: int = 40):
        """Crown of the hair, left temple over the top to the right temple (waves for wavy hair)."""
        pts = []
        for t in np.linspace(math.pi, 2 * math.pi, n):
            r = vol * (1.0 + wave_amp * math.sin(wave_freq * t + phase))
            pts.append(P(math.cos(t) * r, -0.05 + math.sin(t) * r * 0.95, False))
        return pts

    def hair_side(side: int, v_end: float, n: int = 16):
        vs = np.linspace(-0.05, v_end, n)
        return [P(side * (vol + 0.05 + wave_amp * 1.5 * math.sin(wave_freq * 1.5 * v + phase)), v, False)
                for v in (vs if side > 0 else vs[::-1])]

    shirt = _hsv(s["shirt_hue"], 0.5, 0.25 + 0.6 * s["shirt_value"])
    if not at["bald"] and long_hair:
        cv.poly(hair_arc() + hair_side(1, hair_end) + hair_side(-1, hair_end), hair)
    # neck and shoulders
    cv.poly([P(-0.42, 0.6, False), P(0.42, 0.6, False), P(0.45, 1.35, False), P(-0.45, 1.35, False)],
            skin_dark)
    sh = 1.9 if male else 1.6
    cv.poly([P(-sh, 2.4, False), P(-sh * 0.9, 1.5, False), P(-0.5, 1.2, False), P(0.5, 1.2, False),
             P(sh * 0.9, 1.5, False), P(sh, 2.4, False)], shirt)
    if not at["bald"] and long_hair:  # hair falls over the shoulders in front
        for side in (-1, 1):
            cv.poly([P(side * (vol + 0.05), 0.0, False), P(side * 0.75, 0.3, False),
                     P(side * 0.8, hair_end, False), P(side * (vol + 0.1), hair_end + 0.05, False)],
                    hair)

    # --- head -----------------------------------------------------------------------------------
    for side in (-1, 1):  # ears
        cv.ellipse(*P(side * 1.0, 0.05, False), 0.12 * a, 0.2 * b, skin_dark)
        cv.ellipse(*P(side * 0.98, 0.05, False), 0.09 * a, 0.16 * b, skin)
    jaw = (0.16 + 0.1 * s["jaw"]) if male else 0.02 * s["jaw"]
    head = []
    for t in np.linspace(0, 2 * math.pi, 64, endpoint=False):
        ux, vy = math.cos(t), math.sin(t)
        if vy > 0:  # square the jaw of men: widen the lower half and flatten the chin
            ux *= 1.0 + jaw * math.sin(t) ** 0.5 * (1 - math.sin(t) ** 6)
            vy *= 1.0 - 0.4 * jaw
        head.append(P(ux, vy, False))
    cv.poly(head, skin)
    cheek = 0.55
    if male:  # stubble shadow over the jaw
        shadow = [P(math.cos(t) * (1 + jaw * math.sin(t) ** 0.5) * 0.97, 0.3 + math.sin(t) * 0.66, False)
                  for t in np.linspace(0.0, math.pi, 20)]
        cv.poly(shadow, tuple(0.55 * c for c in skin), alpha=0.3)

    # --- age ------------------------------------------------------------------------------------
    if not at["young"]:
        wrinkle = tuple(0.6 * c for c in skin)
        for k in range(3):  # forehead lines
            v = -0.64 + 0.1 * k
            cv.line(_curve(P(-0.45, v), P(0, v - 0.05), P(0.45, v)), wrinkle, 0.012)
        for side in (-1, 1):
            cv.line(_curve(P(side * 0.22, 0.3), P(side * 0.42, 0.48), P(side * 0.38, 0.72)),
                    wrinkle, 0.016)  # nasolabial folds
            cv.line(_curve(P(side * 0.22, 0.06), P(side * 0.36, 0.14), P(side * 0.52, 0.06)),
                    wrinkle, 0.012)  # bags under the eyes
            cv.line(_curve(P(side * 0.5, 0.62), P(side * 0.52, 0.78), P(side * 0.36, 0.9)),
                    wrinkle, 0.012)  # jowls
            for k in range(3):  # crow's feet
                cv.line([P(side * 0.62, -0.05 + 0.05 * (k - 1)), P(side * 0.78, -0.08 + 0.09 * (k - 1))],
                        wrinkle, 0.009)

    # --- makeup under the features ------------------------------------------------------------
    makeup_colour = _hsv(0.55 + 0.4 * s["makeup_hue"], 0.6, 0.55)
    if at["heavy_makeup"]:
        for side in (-1, 1):
            cv.ellipse(*P(side * (0.36 + 0.04 * s["eye_spacing"]), -0.13), 0.22 * a, 0.11 * b,
                       makeup_colour, alpha=0.75)
            cv.ellipse(*P(side * cheek, 0.28), 0.2 * a, 0.11 * b, (230, 90, 110), alpha=0.35)

    # --- eyes -------------------------------------------------------------------------------------
    eye_dx = 0.34 + 0.06 * s["eye_spacing"]
    eye_w = 0.2 * a
    eye_h = {"surprised": 0.13, "angry": 0.07, "happy": 0.06}.get(expression, 0.09) * b
    iris = tuple(float(c) for c in EYE_RGB[int(s["eye_colour"] * len(EYE_RGB)) % len(EYE_RGB)])
    for side in (-1, 1):
        ex, ey = P(side * eye_dx, -0.05)
        if at["eyes_closed"]:
            cv.line(_curve((ex - eye_w, ey), (ex, ey + eye_h * 1.2), (ex + eye_w, ey)), (40, 25, 20),
                    0.02 if at["heavy_makeup"] else 0.012)
            continue
        cv.ellipse(ex, ey, eye_w, eye_h, (245, 245, 240))
        cv.ellipse(ex + 0.1 * yaw * a, ey, 0.55 * eye_h if expression != "surprised" else 0.5 * eye_h,
                   min(eye_h, 0.1 * b) * 0.95, iris)
        cv.ellipse(ex + 0.1 * yaw * a, ey, 0.25 * eye_h, 0.3 * eye_h, (10, 10, 10))
        if expression == "happy":  # cheeks push the lower lid up into a crescent
            cv.ellipse(ex, ey + 1.15 * eye_h, 1.2 * eye_w, 0.9 * eye_h, skin)
        elif expression == "angry":  # lowered, slanted upper lid
            cv.poly([(ex - eye_w * 1.2, ey - eye_h * 1.5), (ex + eye_w * 1.2, ey - eye_h * 1.5),
                     (ex + side * eye_w * 1.2, ey - eye_h * 0.9), (ex - side * eye_w * 1.2, ey - eye_h * 0.1)],
                    skin)
        elif expression == "sad":  # drooping outer corner
            cv.poly([(ex - side * eye_w * 0.2, ey - eye_h * 1.5), (ex + side * eye_w * 1.3, ey - eye_h * 1.5),
                     (ex + side * eye_w * 1.3, ey + eye_h * 0.1)], skin)
        lash = 0.018 if at["heavy_makeup"] else (0.007 if male else 0.011)
        cv.ellipse(ex, ey, eye_w, eye_h, (40, 25, 20), width=lash)

    # --- eyebrows: the strongest expression cue when the mouth is hidden ------------------------
    brow = {"neutral": (-0.26, -0.3, -0.26), "happy": (-0.29, -0.34, -0.28),
            "sad": (-0.36, -0.3, -0.2), "surprised": (-0.4, -0.47, -0.38),
            "angry": (-0.14, -0.24, -0.32)}[expression]
    brow_colour = hair_dark if face.hair_colour != 4 else (110, 110, 110)
    for side in (-1, 1):
        pts = _curve(P(side * (eye_dx - 0.2), brow[0]), P(side * eye_dx, brow[1] - 0.04 * s["brow_shape"]),
                     P(side * (eye_dx + 0.24), brow[2]))
        cv.line(pts, brow_colour, (0.028 if male else 0.016) * (1 + 0.3 * s["brow_shape"]))

    # --- nose ----------------------------------------------------------------------------------------
    nl = 0.22 + 0.08 * s["nose_len"]
    cv.line([P(0.03, 0.0), P(0.06, nl), P(-0.08, nl + 0.04)], skin_dark, 0.012)
    for side in (-1, 1):
        cv.ellipse(*P(side * 0.09, nl + 0.03), 0.035 * a, 0.02 * b, tuple(0.6 * c for c in skin))

    # --- mouth: corners rise with a smile and drop when sad or angry ----------------------------
    mw = (0.3 + 0.1 * s["mouth_width"]) * (1.15 if at["smiling"] else 1.0)
    my = 0.52
    lip_base = (200, 85, 90) if not male else (175, 95, 90)
    lips = _hsv(0.98, 0.85, 0.8) if at["heavy_makeup"] else tuple(
        float(np.clip(0.45 * c + 0.55 * d * (0.85 + 0.2 * s["lip_tone"]), 0, 255)) for c, d in zip(skin, lip_base))
    curve = 0.2 if at["smiling"] else {"sad": -0.12, "angry": -0.08}.get(expression, 0.0)
    # --- facial hair (beard under the mouth, moustache over it) -------------------------------
    beard_colour = tuple(0.55 * c for c in hair)  # facial hair reads darker than head hair
    if at["beard"]:
        jawline = []
        for t in np.linspace(0.05, math.pi - 0.05, 24):  # right temple, under the chin, left temple
            ux = math.cos(t) * (1.0 + jaw * math.sin(t) ** 0.5)
            jawline.append(P(ux * 1.02, math.sin(t) * (1.0 - 0.4 * jaw) * 1.06 + 0.02, False))
        mouth_hole = [P(-mw - 0.08, 0.45), P(0.0, 0.74), P(mw + 0.08, 0.45)]
        cv.poly([P(1.0, 0.1, False)] + jawline + [P(-1.0, 0.1, False), P(-0.9, 0.35, False)] + mouth_hole
                + [P(0.9, 0.35, False)], beard_colour, alpha=0.8 + 0.2 * s["beard_density"])

    left, right = P(-mw, my - curve), P(mw, my - curve)
    seam = P(0, my + 0.3 * curve)  # where the lips meet, mid-mouth
    if at["mouth_open"]:
        if expression == "surprised" and not at["smiling"]:
            cv.ellipse(*P(0, my + 0.04), 0.2 * a, 0.15 * b, lips)
            cv.ellipse(*P(0, my + 0.04), 0.14 * a, 0.11 * b, (55, 12, 18))
        else:
            depth = 0.22 if at["smiling"] else 0.16
            top = _arc(left, (seam[0], seam[1] - 0.03 * b), right)
            bottom = _arc(right, (seam[0], seam[1] + depth * b), left)
            cv.poly(top + bottom, (55, 12, 18))
            cv.poly(top + _arc(right, (seam[0], seam[1] + 0.07 * b), left), (242, 240, 232))  # teeth
            cv.line(top + bottom, lips, 0.02, closed=True)
    else:
        upper = _arc(left, (seam[0], seam[1] - 0.09 * b), right)
        lower = _arc(right, (seam[0], seam[1] + 0.1 * b), left)
        line = _arc(left, seam, right)
        cv.poly(upper + line[::-1], lips)
        cv.poly(line + lower, lips)
        cv.line(line, (80, 30, 35), 0.01)
    if at["smiling"]:  # smile lines at the mouth corners
        for side, corner in ((-1, left), (1, right)):
            cv.line(_arc((corner[0] + side * 0.03 * a, corner[1] - 0.1 * b),
                         (corner[0] + side * 0.1 * a, corner[1]),
                         (corner[0] + side * 0.03 * a, corner[1] + 0.1 * b)), skin_dark, 0.012)

    if at["moustache"]:
        lip_top = my - 0.1
        cv.poly(_arc(P(-mw - 0.1, lip_top + 0.06 - curve * 0.5), P(0, lip_top - 0.16),
                     P(mw + 0.1, lip_top + 0.06 - curve * 0.5))
                + _arc(P(mw + 0.02, lip_top - curve * 0.5), P(0, lip_top - 0.02), P(-mw - 0.02, lip_top - curve * 0.5)),
                beard_colour)

    # --- hair on top ---------------------------------------------------------------------------------
    if at["bald"]:
        cv.ellipse(*P(-0.25, -0.75, False), 0.22 * a, 0.08 * b, tuple(min(255, c * 1.12) for c in skin),
                   angle=-20, alpha=0.6)  # scalp highlight
        if s["bald_side_hair"] < 0.7:
            for side in (-1, 1):
                cv.poly([P(side * 0.92, -0.45, False), P(side * 1.05, -0.3, False), P(side * 1.06, 0.0, False),
                         P(side * 0.95, 0.05, False)], hair)
    else:
        hairline = -0.3 if at["bangs"] else -0.62
        fringe = []
        n = 13
        for i in range(n + 1):  # hairline right to left; bangs hang jagged down to the brows
            u = 1.02 - 2.04 * i / n
            jag = 0.07 * (i % 2) if at["bangs"] else 0.0
            v = hairline + jag + (0.0 if at["bangs"] else 0.35 * u * u)
            fringe.append(P(u * vol * 0.98, v, False))
        cv.poly(hair_arc() + [P(vol * 1.05, 0.0, False)] + fringe + [P(-vol * 1.05, 0.0, False)], hair)
        strand = tuple(0.8 * c for c in hair)
        for k in range(5):  # strands: straight lines or curls
            u0 = -0.6 + 0.3 * k
            if at["wavy_hair"]:
                pts = [P(u0 + 0.1 * math.sin(5 * t + k), -0.95 + 0.4 * t, False) for t in np.linspace(0, 1, 10)]
            else:
                pts = [P(u0 * 0.5, -1.02, False), P(u0, hairline - 0.05, False)]
            cv.line(pts, strand, 0.008)

    # --- accessories ------------------------------------------------------------------------------
    glasses_colour = _hsv(s["glasses_colour"], 0.5, 0.15 + 0.5 * s["glasses_colour"])
    lens_r = 0.27 if s["glasses_shape"] < 0.5 else 0.24
    for side in (-1, 1) if (at["eyeglasses"] or at["sunglasses"]) else ():
        ex, ey = P(side * eye_dx, -0.04)
        if at["sunglasses"]:
            cv.ellipse(ex, ey, (lens_r + 0.05) * a, (lens_r - 0.01) * b * 0.8, (22, 22, 28))
            cv.ellipse(ex - 0.06 * a, ey - 0.05 * b, 0.06 * a, 0.03 * b, (90, 90, 110), alpha=0.5)
        else:
            cv.ellipse(ex, ey, lens_r * a, lens_r * b * 0.75, (210, 230, 240), alpha=0.18)
            cv.ellipse(ex, ey, lens_r * a, lens_r * b * 0.75, glasses_colour, width=0.012)
        cv.line([P(side * (eye_dx + lens_r), -0.06), P(side * 1.0, -0.02, False)], glasses_colour, 0.011)
    if at["eyeglasses"] or at["sunglasses"]:
        cv.line(_curve(P(-eye_dx + lens_r, -0.06), P(0, -0.1), P(eye_dx - lens_r, -0.06)), glasses_colour, 0.011)

    if at["surgical_mask"]:
        mask_colour = [(170, 205, 235), (245, 245, 245), (35, 35, 40)][int(s["mask_colour"] * 3) % 3]
        top = 0.18
        outline = [P(-0.95, top + 0.02, False), P(-0.3, top - 0.05), P(0.3, top - 0.05), P(0.95, top + 0.02, False),
                   P(0.82, 0.75, False), P(0.3, 1.0), P(-0.3, 1.0), P(-0.82, 0.75, False)]
        cv.poly(outline, mask_colour)
        pleat = tuple(0.8 * c for c in mask_colour)
        for v in (0.38, 0.55, 0.72):
            cv.line([P(-0.75, v, False), P(0.75, v, False)], pleat, 0.007)
        for side in (-1, 1):
            cv.line([P(side * 0.95, top + 0.02, False), P(side * 1.04, 0.0, False)], (230, 230, 230), 0.008)
            cv.line([P(side * 0.86, 0.72, False), P(side * 1.02, 0.2, False)], (230, 230, 230), 0.008)

    if at["hat"]:
        hat = _hsv(s["hat_hue"], 0.65, 0.3 + 0.6 * s["hat_hue_b"])
        band = tuple(0.7 * c for c in hat)
        brim = -0.5
        if s["hat_kind"] < 0.5:  # beanie
            dome = [P(1.2 * math.cos(t), brim - 0.1 + 0.75 * math.sin(t) * 1.0, False)
                    for t in np.linspace(math.pi, 2 * math.pi, 24)]
            cv.poly(dome + [P(1.2, brim + 0.08, False), P(-1.2, brim + 0.08, False)], hat)
            cv.poly([P(-1.22, brim - 0.12, False), P(1.22, brim - 0.12, False), P(1.22, brim + 0.1, False),
                     P(-1.22, brim + 0.1, False)], band)
        else:  # cap with a visor
            dome = [P(1.12 * math.cos(t), brim + 0.85 * math.sin(t), False) for t in np.linspace(math.pi, 2 * math.pi,
                                                                                                 24)]
            cv.poly(dome, hat)
            cv.poly(_curve(P(-0.9, brim, False), P(0.25, brim + 0.3, False), P(1.4, brim - 0.05, False))
                    + [P(1.2, brim - 0.12, False), P(-0.9, brim - 0.08, False)], band)

    if at["earrings"]:
        ring = [(235, 195, 60), (210, 210, 220), (200, 40, 60)][int(s["earring_colour"] * 3) % 3]
        for side in (-1, 1):
            lx, ly = P(side * 1.0, 0.26, False)
            if s["earring_kind"] < 0.5:  # hoop
                cv.ellipse(lx, ly + 0.13 * b, 0.16 * a, 0.16 * a, ring, width=0.02)
            else:  # drop
                cv.line([(lx, ly), (lx, ly + 0.14 * b)], ring, 0.014)
                cv.ellipse(lx, ly + 0.2 * b, 0.11 * a, 0.11 * a, ring)

    # --- camera: roll, lighting, exposure, sensor noise, downsample --------------------------------
    img = cv.img
    roll = 24.0 * (s["roll"] - 0.5)
    rot = cv2.getRotationMatrix2D((cx * work, cy * work), roll, 1.0)
    img = cv2.warpAffine(img, rot, (work, work), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    yy, xx = _grid(size)  # lighting and exposure are smooth: apply them at the output size
    ang = 2 * math.pi * s["light_angle"]
    light = 1.0 + (0.45 * s["light_strength"]) * ((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang))
    cast = 1.0 + 0.12 * (np.array(_hsv(s["colour_cast"], 1.0, 1.0), np.float32) / 255.0 - 0.5)
    img = img * light[..., None] * cast
    img = (img - 128.0) * (0.8 + 0.4 * s["contrast"]) + 128.0 + 50.0 * (s["brightness"] - 0.5)
    if s["blur"] > 0.75:  # a quarter of the photos are slightly out of focus
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=(0.3 + 2.0 * (s["blur"] - 0.75)) * size / 64)
    noise_rng = np.random.default_rng(int(s["noise"] * 2 ** 31))
    img = img + noise_rng.normal(0.0, 1.0 + 5.0 * s["noise"], img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
