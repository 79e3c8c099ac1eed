"""Bounces and complaints: read them, find whom they are about, act on the reader."""
