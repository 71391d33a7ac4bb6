"""A pipeline for ``streamrt run double_app.py --listen``: Kafka clients feed it and read it.

Reads JSON values ``{"n": int}`` from the topic ``interop-in`` and writes
``{"n": n, "doubled": 2 * n}`` to ``interop-out``, in order (one partition each).
"""

import streamrt as sr

app = sr.App("double")
(app.stream(app.topic("interop-in"), name="numbers")
    .map(lambda v: {"n": v["n"], "doubled": 2 * v["n"]}, name="double")
    .to(app.topic("interop-out")))
