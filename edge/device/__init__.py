"""Device operations: is this Jetson ready (preflight), power and temperature (telemetry), will a
model fit (memory budget), which device an engine was built for (engine manifest), and signed
bundles that carry a run's stages to the device. Imports only the edge core."""
