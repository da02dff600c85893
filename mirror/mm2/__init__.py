"""Java MirrorMaker 2 semantics as pure functions and values: formats, names, filters, translation."""
