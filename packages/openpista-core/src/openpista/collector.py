"""The cyclic garbage collector held off while a process starts (``openpista run``, the
daemon until it serves).

Start-up imports a few hundred modules and builds some hundred thousand objects, almost none
of them garbage; with the collector on, each of its passes walks them all again, about a
tenth of a cold single shot here (docs/development.md). :func:`pause` turns it off;
:func:`resume` moves what start-up built to the permanent generation (``gc.freeze``: never
walked again, freed by reference counting as usual) and turns the collector back on before
the real work starts. The price: the few cycles start-up left unreachable (~1,000 objects of
~70,000 here, mostly import-time tracebacks) are never freed; collecting them first would
cost a full pass (~50 ms).
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Turn the cyclic collector off until :func:`resume` (nothing if it is off already)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze the objects built so far and turn the collector back on, if :func:`pause`
    turned it off; calling it again does nothing."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
