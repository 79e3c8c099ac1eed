"""System tests: newsletter up, browsers, Dovecot and Postfix, drills, fuzzing, the wheel."""
