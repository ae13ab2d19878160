"""One module per bundled capture: each ``build_*`` puts one story on the wire and returns its
``Capture``. ``bundle.py`` lists them and writes them.
"""
