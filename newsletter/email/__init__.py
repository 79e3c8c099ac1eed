"""The one builder of every email: templates, MIME, headers, VERP addresses, DKIM."""
