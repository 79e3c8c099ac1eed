"""What operators watch: monitoring, the /metrics scrape, the dashboard's numbers and charts."""
