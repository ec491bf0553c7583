"""``ticketflow demo``: a simulated service desk behind a TOPdesk-compatible API, synced by the
real TOPdesk connector into a demo warehouse, with the dashboard, alerts and a webhook inbox."""
