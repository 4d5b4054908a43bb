"""RTP media: packets, DTMF, G.711, paced playback and relay."""
