"""The app's routers, one module per area (see ``app/main.py`` for the route map)."""
