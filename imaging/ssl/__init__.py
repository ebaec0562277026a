"""imaging.ssl: self-supervised proxy tasks (2D and 3D) sharing one interface (``base.ProxyTask``)."""
