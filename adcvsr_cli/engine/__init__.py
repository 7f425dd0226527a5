"""The engine: frames through the network on a device, chunk by chunk and tile by tile.

``device`` (where and in what precision), ``options`` (what the user asked), ``tiling`` and
``chunking`` (windows in space and time, blending, out-of-memory back-off), ``scenes`` (cuts),
``colorfix`` (colour statistics), ``frames`` (arrays <-> device tensors), ``upscaler`` (the
network run over chunks and tiles). :mod:`adcvsr_cli.pipeline` joins them with the media layer.
"""
