"""The bundled presets (default, lab, tiny, search) as package data: read them with importlib.resources."""
