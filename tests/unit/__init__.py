"""Unit tests: no database server, broker, SMTP server or worker; under a minute.

Laid out as the package is: the tests of newsletter/<package>/<module>.py are in
tests/unit/<package>/test_<module>.py.
"""
