"""The host side of kestrel's protocol (guest_agent/PROTOCOL.md): codec and client."""
