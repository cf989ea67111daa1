"""What a worker serves: its web server and page (`web/`), metrics, the leaders and impact
views it follows, consumer lag."""
