"""Recorded prompts: 8 kHz G.711 µ-law, headerless (``<lang>/<name>.ul``).

Produced by ``python -m ivr_bridge.prompts.generate`` (espeak-ng + sox) and committed, so
running the product needs no TTS engine.
"""
