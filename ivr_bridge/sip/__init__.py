"""A minimal, strict SIP user agent: sans-I/O parsing and SDP, a thin asyncio edge."""
