"""The H5 client, shipped as package data (`h5/`) so an installed edge can serve it."""
