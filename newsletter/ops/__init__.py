"""What operators watch: metrics, monitoring, the dashboard's numbers and charts."""
