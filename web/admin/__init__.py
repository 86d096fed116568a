"""The admin pages: a second aiohttp application under /admin, on its own listen address."""
