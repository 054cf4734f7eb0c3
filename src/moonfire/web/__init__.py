"""The HTTP side: Moonfire NVR's API, served from the recording process (``moonfire run``).

One aiohttp application runs its own event loop in its own thread
(``server.py``), so recording never waits for HTTP and disk reads go to an
executor, never the loop.  ``app.py`` builds the routes; ``api.py`` the JSON
endpoints; ``view.py`` the virtual ``.mp4`` over HTTP with ``http_entity.py``
doing RFC 9110 ranges and conditional requests for any sized, readable
entity; ``live.py`` the live fMP4 WebSocket; ``auth.py`` users, sessions,
CSRF and permissions.
"""
