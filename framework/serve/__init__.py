"""Running trained models: runtimes for exported files, their cost on a device, the .eim and the HTTP server."""
