"""Unit tests of newsletter.ops: charts drawn as SVG, the readiness cache."""
