"""Articles: parsed from scraped pages, Markdown and feeds, stored and queried."""
