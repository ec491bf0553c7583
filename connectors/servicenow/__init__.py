"""ServiceNow (Table API): task records, their ``sys_audit`` history and journal comments.

Modules: ``query`` (request parameters, responses, dates), ``client`` (Basic/OAuth client,
retries, rate-limit pacing), ``choices`` (``sys_choice`` labels, state + hold reason ->
lifecycle), ``records`` (record -> canonical ticket), ``names`` (group/user names in bulk),
``trail`` (the bulk sys_audit and sys_journal_field requests), ``history`` (audit rows and
journal entries -> events), ``connector`` (paging, the sync protocol).
docs/connectors/servicenow.md documents the choices.
"""

from connectors.servicenow.choices import Choices, StateMapper
from connectors.servicenow.client import OAuthPasswordAuth, make_servicenow_client
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.query import format_sn_datetime, keyset_query, parse_sn_datetime

__all__ = [
    "Choices",
    "OAuthPasswordAuth",
    "ServiceNowConnector",
    "StateMapper",
    "format_sn_datetime",
    "keyset_query",
    "make_servicenow_client",
    "parse_sn_datetime",
]
