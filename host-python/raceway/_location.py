"""Where the user's code called us from, found by walking frames (never by formatting a stack).

A frame belongs to the SDK when its file lies inside this package's directory: matching the
directory, not the word "raceway", keeps user folders named ``raceway`` visible.
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Optional

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

getframe = sys._getframe


def user_frame(frame: Optional[FrameType]) -> Optional[FrameType]:
    """The first frame, from ``frame`` outwards, that is not the SDK's own."""
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        frame = frame.f_back
    return frame
