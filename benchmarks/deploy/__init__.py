"""Apply a trained run to new images (``predict``) and export its network for a production runtime (``export``)."""
