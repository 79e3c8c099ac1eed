"""Unit tests of newsletter.articles: reading pages, Markdown and feed HTML into text."""
