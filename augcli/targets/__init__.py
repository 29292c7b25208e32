"""Target kinds: what follows an image's pixels through the geometric ops.

A target kind knows how a forward 3x3 map of pixel centres moves it; the
annotation formats (``augcli.formats``) read and write it. ``boxes``:
axis-aligned boxes, the kind every format carries today.
"""
